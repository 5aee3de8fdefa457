"""Figures drawn from stored results are reproducible: the same results give the same PNG bytes."""

import numpy as np
import pandas as pd

from lalora_lite.study.plotting import plot_accuracy_vs_epsilon


def test_accuracy_vs_epsilon_is_byte_identical_when_redrawn_and_leaves_numpy_alone(tmp_path):
    rng = np.random.default_rng(1)
    runs = pd.DataFrame(
        [
            {"method": m, "epsilon_target": eps, "seed": seed, "accuracy": rng.uniform(0.3, 0.9)}
            for m in ("dp-lora", "lalora", "lalora-nofilter")
            for eps in (1.0, 3.0)
            for seed in range(5)
        ]
        + [{"method": "fedlora", "epsilon_target": float("inf"), "seed": s, "accuracy": 0.85} for s in range(5)]
    )
    meta = {"test_majority": 0.2, "test_chance": 0.2}
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    first, second = tmp_path / "a.png", tmp_path / "b.png"
    plot_accuracy_vs_epsilon(runs, meta, "five seeds: every point jittered", first)
    assert (np.random.get_state()[1] == before).all()  # a caller's numpy stream is not consumed
    np.random.seed(7)  # whatever the global generator holds, the figure is the same
    plot_accuracy_vs_epsilon(runs, meta, "five seeds: every point jittered", second)
    assert first.read_bytes() == second.read_bytes()
