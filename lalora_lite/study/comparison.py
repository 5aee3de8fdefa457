"""The main job: a fair comparison of all methods x privacy budgets x seeds on one task.

1. **Search** (:mod:`lalora_lite.study.search`; validation split, seed ``profile.seeds[0]``): at *every*
   budget each method gets the same log-spaced grid of learning rates x clip norms, widened while
   its best point lies on an edge; the best point per method and budget is kept.
2. **Final runs** (test split): every method x budget x seed with its chosen setting.

Runs are independent (:mod:`.runs`): they go to ``workers`` processes (one thread each, so results do
not depend on the number of workers or cores). Each run keeps a checkpoint and a per-round CSV under
``runs/``; a finished run is never recomputed and an interrupted one resumes. Tidy results go to
``results/<task>/<profile>/``: ``history.csv`` (one row per task/method/epsilon/seed/round),
``search.csv``, ``chosen.csv``, ``meta.json`` (settings, versions, wall time and per-phase profile).
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import time
from collections.abc import Sequence
from dataclasses import replace as dataclasses_replace
from importlib.metadata import version
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from .. import cpu_kernels
from ..accounting import check_budget_inputs
from ..methods import get_method
from ..tasks import TASKS, get_profile, get_task
from ..tasks.profiles import Profile
from .runs import RUN_THREADS, Runner, RunSpec, cached_task, cpu_model, default_workers, measured_eta, resolve_device
from .search import GridSearch, check_grid, score
from .stats import PUBLIC_TUNING

PACKAGES = ("torch", "timm", "transformers", "opacus", "numpy", "pandas", "seaborn")


def planned_runs(profile: Profile, method: str) -> tuple[int, int]:
    """``(search runs before any widening, final runs)`` of ``method`` in a comparison: a private
    method searches lr x clip at every epsilon, the non-private one the lrs once; final runs are one
    per budget and seed."""
    runs_at = len(budgets(method, profile.epsilons))
    points = len(profile.lr_grid) * (len(profile.clip_grid) if get_method(method).private else 1)
    return runs_at * points, runs_at * len(profile.seeds)


def count_test_labels(task: str, profile: str, seed: int) -> torch.Tensor:
    """Examples per class in the test split (the same for every seed), from the cached built task."""
    return torch.bincount(cached_task(task, profile, seed).test["labels"])


def budgets(method: str, epsilons: Sequence[float]) -> tuple[float | None, ...]:
    """The budgets a method runs at: every epsilon, or ``None`` (no DP) for a non-private method."""
    return tuple(epsilons) if get_method(method).private else (None,)


def search_clips(profile: Profile, method: str) -> tuple[float, ...]:
    """The clip norms a search starts from: the profile's grid, or its first value for a non-private
    method (which clips nothing, so the clip norm only names its runs)."""
    return profile.clip_grid if get_method(method).private else profile.clip_grid[:1]


def search_spec(
    task: str,
    profile_name: str,
    profile: Profile,
    method: str,
    epsilon: float | None,
    seed: int,
    lr: float,
    clip_norm: float,
) -> RunSpec:
    """One search run: ``profile.search_rounds`` rounds scored on the validation split of ``seed``."""
    return RunSpec(task, profile_name, method, epsilon, seed, lr, clip_norm, profile.search_rounds, "val")


def search(
    task: str, profile_name: str, profile: Profile, methods: Sequence[str], epsilons: Sequence[float], runner: Runner
) -> tuple[list[GridSearch], pd.DataFrame]:
    """Every method's grid search at every budget (widened until no best point is on an edge)."""
    searches = [
        GridSearch(m, eps, profile.lr_grid, search_clips(profile, m), profile.max_widen, profile.val_size)
        for m in methods
        for eps in budgets(m, epsilons)
    ]
    histories, open_searches, step = [], list(searches), 0
    while open_searches:
        step += 1
        jobs = [(s, p) for s in open_searches for p in s.pending()]
        specs = [
            search_spec(task, profile_name, profile, s.method, s.epsilon, profile.seeds[0], lr, clip)
            for s, (lr, clip) in jobs
        ]
        for (s, point), history in zip(jobs, runner.run(specs, f"search, step {step}")):
            s.scores[point] = score(history)
            histories.append(history)
        open_searches = [s for s in open_searches if s.widen()]
    return searches, pd.concat(histories, ignore_index=True)


TUNE_ON = ("private", "public")


def tuning_task(task: str, tune_on: str) -> str:
    """The task the search runs on: ``task`` itself (its private validation split) or its public stand-in."""
    if tune_on not in TUNE_ON:
        raise ValueError(f"unknown tune_on {tune_on!r}; allowed: {', '.join(TUNE_ON)}")
    if tune_on == "private":
        return task
    public = get_task(task).public_tuning
    if public is None:
        with_public = [name for name, spec in TASKS.items() if spec.public_tuning]
        raise ValueError(
            f"task {task!r} has no public data to tune on; tune_on='public' is offered for: {', '.join(with_public)}"
        )
    return public


def compare(
    task: str,
    profile_name: str,
    methods: tuple[str, ...] | None = None,
    epsilons: tuple[float, ...] | None = None,
    seeds: tuple[int, ...] | None = None,
    runs_dir: Path = Path("runs"),
    results_dir: Path = Path("results"),
    progress: bool = True,
    device: str = "cpu",
    workers: int | None = None,
    tune_on: str = "private",
) -> pd.DataFrame:
    """Search, then all final runs; writes the tidy results and returns the final history.

    ``tune_on="public"`` runs the search on the task's public stand-in (``TaskSpec.public_tuning``:
    data no client holds) instead of the private validation split: the chosen settings then cost no
    privacy. Its results go to ``results/<task>/<profile>+public-tuning/``."""
    target = resolve_device(device)
    profile = get_profile(task, profile_name)
    search_task = tuning_task(task, tune_on)
    methods = methods or profile.methods
    for m in methods:
        get_method(m)
    epsilons, seeds = epsilons or profile.epsilons, seeds or profile.seeds
    for eps in epsilons:
        check_budget_inputs(eps, profile.delta, 1.0, 1)
    check_grid("lr_grid", profile.lr_grid)
    check_grid("clip_grid", profile.clip_grid)
    workers = workers if workers is not None else (1 if target.type == "cuda" else default_workers())
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    profile = dataclasses_replace(profile, seeds=tuple(seeds), epsilons=tuple(epsilons))
    search_profile = dataclasses_replace(
        get_profile(search_task, profile_name), seeds=profile.seeds, epsilons=profile.epsilons
    )

    if progress:
        search_runs, final_runs = (sum(n) for n in zip(*(planned_runs(profile, m) for m in methods)))
        tqdm.write(
            f"{task} [{profile_name}]: {search_runs} search runs of {profile.search_rounds} rounds (more if a "
            f"grid widens), then {final_runs} final runs of {profile.rounds} rounds, on {workers} worker(s); "
            f"finished runs in {runs_dir} are read back (benchmarks/compare_profile.py projects the time)"
        )
        out_name = profile_name if tune_on == "private" else profile_name + PUBLIC_TUNING
        if eta := measured_eta(results_dir / task / out_name, search_runs, final_runs, workers):
            tqdm.write(eta)
    started = time.perf_counter()
    with Runner(runs_dir, workers, device, progress) as runner:
        counts = runner.call(count_test_labels, task, profile_name, seeds[0]).double()  # builds where runs do
        searches, search_history = search(search_task, profile_name, search_profile, methods, epsilons, runner)
        search_wall = time.perf_counter() - started
        specs = [
            RunSpec(task, profile_name, s.method, s.epsilon, seed, *s.best(), profile.rounds, "test")
            for s in searches
            for seed in seeds
        ]
        history = pd.concat(runner.run(specs, "final runs"), ignore_index=True)

    out = results_dir / task / (profile_name if tune_on == "private" else profile_name + PUBLIC_TUNING)
    out.mkdir(parents=True, exist_ok=True)
    history.to_csv(out / "history.csv", index=False)
    search_history.to_csv(out / "search.csv", index=False)
    chosen = pd.DataFrame([s.chosen_row() for s in searches])
    chosen.to_csv(out / "chosen.csv", index=False)
    meta = {
        "task": task,
        "profile": profile_name,
        "profile_settings": profile.__dict__,
        "methods": list(methods),
        "epsilons": list(epsilons),
        "seeds": list(seeds),
        "search_seed": seeds[0],
        "tuned_on": tune_on,
        "search_task": search_task,
        "chosen": {
            m: {
                ("none" if math.isinf(r.epsilon) else f"{r.epsilon:g}"): {"lr": r.lr, "clip_norm": r.clip_norm}
                for r in chosen[chosen["method"] == m].itertuples()
            }
            for m in methods
        },
        "test_chance": 1.0 / len(counts),
        "test_majority": float(counts.max() / counts.sum()),
        "versions": {p: version(p) for p in PACKAGES} | {"python": platform.python_version()},
        "git_commit": _git_commit(),
        "device": torch.cuda.get_device_name(target) if target.type == "cuda" else "cpu",
        "cpu_model": cpu_model(),
        "cpu_kernels": {
            "capability": torch.backends.cpu.get_cpu_capability(),
            **{name: os.environ.get(name) for name in (*cpu_kernels.PINS, cpu_kernels.SWITCH)},
        },
        "workers": workers,
        "threads_per_run": RUN_THREADS,
        "wall_s_this_invocation": time.perf_counter() - started,
        "search_wall_s_this_invocation": search_wall,
        "profile_s": {"search": phase_profile(search_history), "final": phase_profile(history)},
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2, default=str))
    return history


def phase_profile(history: pd.DataFrame) -> dict[str, float]:
    """Seconds summed over the runs of ``history`` per phase (:data:`~lalora_lite.study.runs.PHASES`) and the
    number of runs
    (of this invocation: a run read back from ``runs/`` keeps the times it was made with)."""
    per_run = history.groupby(["method", "epsilon_target", "seed", "lr", "clip_norm"])
    first = per_run[["build_s", "setup_s"]].first().sum()
    summed = per_run[["train_s", "eval_s"]].sum().sum()
    return {
        "runs": int(per_run.ngroups),
        **{k: float(v) for k, v in first.items()},
        **{k: float(v) for k, v in summed.items()},
    }


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
