"""The explanation study (``lalora explain``): why the paper reports +8 to +15 points and the stand-ins none.

Five experiments, one per hypothesis (``docs/explain.md``), all on the task's ``cpu``-profile runs
(80 x 5 cosine rounds on the vision stand-in), resumable and parallel like ``lalora compare``:

``head-control``      H1: does LoRA help at all under DP? ``dp-head``, ``dp-lora``, ``ffa-lora``,
                      ``lalora`` and ``lalora-authors`` along a lr x C curve at eps 1 and 3.
``authors-protocol``  H2: the authors' protocol (B at 2x lr, the filter as an extra step; and, as a
                      study-only arm, their noise) against the baselines at a *shared* lr x C (DP-LoRA's
                      best and half of it) and at each method's own best, 5 seeds, test split.
``dose-response``     H3: does LA-LoRA's advantage grow with the noise? eps 0.25, 0.5 (plus H1's 1, 3)
                      and clipping without noise, each method along its curve.
``budget``            H4: what alternation costs without noise (``lalora-nodp`` against ``fedlora``), and,
                      on the text task, twice the rounds at eps 3.
``filter-strength``   H5: the filter at 3, 5 (the paper's), 9 and 17 taps and none, at LA-LoRA's best
                      lr x C and at lr x C scaled by the filter's gain.

**The curves.** The comparison's search found the score a function of lr x C alone (every example is
clipped), so a curve fixes ``C = 2`` (the clip norm the comparison's search chose for most method-budget
pairs) and moves the learning rate along a ladder ``lr x C = 0.1 * sqrt(2)^k``. A curve starts at a few
rungs around an anchor (the comparison's chosen lr x C where it has one) and adds a rung while the best
mean over its seeds (validation split, seeds 0-2) is at an edge, at most :attr:`Shape.max_extend` per side.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..data import dataset_size
from ..federated import make_ledgers
from ..methods import get_method
from ..smoothing import white_noise_gain
from ..tasks import get_profile
from .arms import DEFAULT, get_arm
from .runs import Runner, RunSpec, cached_task, federated_config

EXPERIMENTS = ("head-control", "authors-protocol", "dose-response", "budget", "filter-strength")
CLIP = 2.0
BASE_LR_CLIP = 0.1  # rung 0 of the ladder lr x C = 0.1 * sqrt(2)^k
CURVE_EPSILONS = (1.0, 3.0)
DOSE_EPSILONS = (0.25, 0.5)
HEAD_CONTROL = ("dp-head", "dp-lora", "ffa-lora", "lalora", "lalora-authors")
DOSE_METHODS = ("dp-lora", "ffa-lora", "lalora")
AUTHORS_METHODS = ("dp-lora", "ffa-lora", "lalora", "lalora-authors")
AUTHORS_ARM = ("lalora-authors", "authors-noise")
FILTER_ARMS = (
    ("lalora-nofilter", DEFAULT),
    ("lalora", "taps3"),
    ("lalora", DEFAULT),
    ("lalora", "taps9"),
    ("lalora", "taps17"),
)
CLIP_ONLY = "clip-only"
# Tasks whose runs are still rising at the last round (the text stand-in: 30 noisy steps per factor and client)
# also run at twice the rounds in the budget experiment.
DOUBLE_ROUNDS_TASKS = ("wordnet-minilm",)
# Where a curve starts when the comparison chose nothing for it: rungs relative to a method the comparison
# tuned (the head alone takes larger steps; the authors' LA-LoRA steps about twice as far as LA-LoRA).
ANCHOR_FALLBACK = {"dp-head": ("dp-lora", +2), "lalora-authors": ("lalora", -2)}


@dataclass(frozen=True)
class Shape:
    """Starting rungs (offsets from the anchor), extensions, curve (val) and final (test) seeds, H1's budgets
    and methods, and the experiments ``lalora explain`` runs when none are named."""

    head_offsets: tuple[int, ...]
    dose_offsets: tuple[int, ...]
    max_extend: int
    curve_seeds: tuple[int, ...]
    final_seeds: tuple[int, ...]
    curve_epsilons: tuple[float, ...] = CURVE_EPSILONS
    head_methods: tuple[str, ...] = HEAD_CONTROL
    experiments: tuple[str, ...] = EXPERIMENTS


SHAPES = {
    "cpu": Shape((-2, -1, 0, 1), (-1, 0, 1), 8, (0, 1, 2), (0, 1, 2, 3, 4)),
    "smoke": Shape((0,), (0,), 0, (0,), (0,)),
}
# A text run costs ~5x a vision run: the text study keeps near 3 h on 2 cores with H1 at eps 3 and H4 (docs/explain.md)
TEXT_METHODS = ("dp-head", "dp-lora", "ffa-lora", "lalora")
TEXT = Shape((-1, 0, 1), (-1, 0, 1), 4, (0, 1, 2), (0, 1, 2, 3, 4), (3.0,), TEXT_METHODS, ("head-control", "budget"))
TASK_SHAPES = {("wordnet-minilm", "cpu"): TEXT}


def shape_of(task: str, profile: str) -> Shape:
    """The study's shape for ``task`` in ``profile``: :data:`TASK_SHAPES`, else the profile's :data:`SHAPES`."""
    return TASK_SHAPES.get((task, profile), SHAPES["smoke" if profile == "smoke" else "cpu"])


@dataclass(frozen=True)
class Curve:
    """One lr x C curve: a method (and arm) at one budget (``None``: without DP)."""

    method: str
    arm: str
    epsilon: float | None


@dataclass(frozen=True)
class Point:
    """A run of the study: the run itself and where it belongs."""

    experiment: str
    setting: str  # "curve", "shared", "half", "own", "gain-scaled", "tuned", "rounds x2", ...
    spec: RunSpec


def lr_clip(rung: float) -> float:
    """lr x C at ``rung`` of the ladder (6 significant digits, so run names stay short)."""
    return float(f"{BASE_LR_CLIP * math.sqrt(2) ** rung:.6g}")


def rung_of(lr_clip_value: float) -> int:
    """The ladder's rung nearest to ``lr_clip_value``."""
    return round(2 * math.log2(lr_clip_value / BASE_LR_CLIP))


def anchors(chosen: pd.DataFrame | None, method: str, epsilon: float | None) -> int:
    """The rung a curve starts around: the comparison's chosen lr x C for ``(method, epsilon)`` (eps below
    the smallest it tuned: the smallest's), else :data:`ANCHOR_FALLBACK`, else rung 4 (lr x C = 0.4)."""
    if method in ANCHOR_FALLBACK:
        base, shift = ANCHOR_FALLBACK[method]
        return anchors(chosen, base, epsilon) + shift
    if chosen is not None:
        rows = chosen[chosen["method"] == method]
        if epsilon is None or math.isinf(epsilon):
            rows = rows[np.isinf(rows["epsilon"].astype(float))]
        else:  # the tuned budget nearest to epsilon (by ratio)
            rows = rows[~np.isinf(rows["epsilon"].astype(float))]
            rows = rows.iloc[(np.log(rows["epsilon"].astype(float)) - math.log(epsilon)).abs().argsort()[:1]]
        if len(rows):
            return rung_of(float(rows["lr"].iloc[0] * rows["clip_norm"].iloc[0]))
    return 4


def spec(
    task: str, profile: str, method: str, arm: str, epsilon, seed: int, value: float, split: str, rounds: int
) -> RunSpec:
    """A study run at lr x C = ``value`` (``C`` = :data:`CLIP`; a non-private run keeps C as its name only)."""
    eps = epsilon if get_method(method).private else None
    return RunSpec(task, profile, method, eps, seed, float(f"{value / CLIP:.6g}"), CLIP, rounds, split, arm)


class Study:
    """The study of one task: its shape, its anchors, and the runs it has made so far."""

    def __init__(
        self, task: str, profile: str, runner: Runner, chosen: pd.DataFrame | None, shape: Shape | None = None
    ) -> None:
        self.task, self.profile, self.runner, self.chosen = task, profile, runner, chosen
        self.shape = shape or shape_of(task, profile)
        self.rounds = get_profile(task, profile).rounds
        self.points: list[Point] = []
        self.accuracy: dict[RunSpec, float] = {}
        self.run_s: dict[RunSpec, float] = {}
        self._sigmas: dict[tuple, float] = {}

    # --- running ----------------------------------------------------------------------------------
    def run(self, points: Sequence[Point], desc: str) -> None:
        """Run (or read back) ``points``; their final accuracies land in :attr:`accuracy`."""
        self.points += points
        todo = list(dict.fromkeys(p.spec for p in points if p.spec not in self.accuracy))
        histories = self.runner.run(todo, desc, lambda s, h: f"acc {h['accuracy'].dropna().iloc[-1]:.3f}")
        for s, history in zip(todo, histories):
            self.accuracy[s] = float(history["accuracy"].dropna().iloc[-1])
            self.run_s[s] = float(history["train_s"].sum() + history["eval_s"].sum())  # over every session

    def curve_points(self, experiment: str, curve: Curve, rungs: Iterable[int]) -> list[Point]:
        return [
            Point(
                experiment,
                "curve",
                spec(
                    self.task,
                    self.profile,
                    curve.method,
                    curve.arm,
                    curve.epsilon,
                    seed,
                    lr_clip(k),
                    "val",
                    self.rounds,
                ),
            )
            for k in rungs
            for seed in self.shape.curve_seeds
        ]

    def curve_means(self, curve: Curve) -> dict[int, float]:
        """Mean final validation accuracy over the curve's seeds at each rung run so far."""
        means: dict[int, list[float]] = {}
        for s, acc in self.accuracy.items():
            if (s.split, s.method, s.arm, s.epsilon) == ("val", curve.method, curve.arm, self._eps(curve)):
                if s.seed in self.shape.curve_seeds:
                    means.setdefault(rung_of(s.lr * s.clip_norm), []).append(acc)
        return {k: sum(v) / len(v) for k, v in sorted(means.items()) if len(v) == len(self.shape.curve_seeds)}

    def _eps(self, curve: Curve) -> float | None:
        return curve.epsilon if get_method(curve.method).private else None

    def best_rung(self, curve: Curve) -> int:
        means = self.curve_means(curve)
        if not means:
            raise ValueError(f"no finished rung on the curve {curve}")
        return max(means, key=lambda k: (means[k], -k))  # ties: the smaller step

    def run_curves(self, experiment: str, curves: dict[Curve, Sequence[int]]) -> None:
        """Run each curve's starting rungs, then extend every curve whose best rung is on an edge (one
        rung per wave, at most ``max_extend`` per side), in waves that run all curves' rungs at once."""
        self.run([p for c, rungs in curves.items() for p in self.curve_points(experiment, c, rungs)], experiment)
        start = {c: (min(r), max(r)) for c, r in curves.items()}
        for wave in range(2 * self.shape.max_extend):
            extra = [
                p
                for c in curves
                for p in self.curve_points(
                    experiment, c, extension(self.curve_means(c), start[c], self.shape.max_extend)
                )
            ]
            if not extra:
                return
            self.run(extra, f"{experiment}: extending {wave + 1}")

    # --- the experiments --------------------------------------------------------------------------
    def head_control(self) -> None:
        curves = {
            Curve(m, DEFAULT, e): [anchors(self.chosen, m, e) + o for o in self.shape.head_offsets]
            for m in self.shape.head_methods
            for e in self.shape.curve_epsilons
        }
        self.run_curves("head-control", curves)

    def dose_response(self) -> None:
        curves = {
            Curve(m, DEFAULT, e): [anchors(self.chosen, m, e) - (e < 0.5) + o for o in self.shape.dose_offsets]
            for m in DOSE_METHODS
            for e in DOSE_EPSILONS
        }
        # clipping without noise: the eps-3 run's schedule and batches, sigma = 0 (larger steps pay off)
        curves |= {
            Curve(m, CLIP_ONLY, 3.0): [anchors(self.chosen, m, 3.0) + 1 + o for o in self.shape.dose_offsets]
            for m in DOSE_METHODS
        }
        self.run_curves("dose-response", curves)

    def authors_protocol(self) -> None:
        points = []
        for e in self.shape.curve_epsilons:
            shared = self.best_rung(Curve("dp-lora", DEFAULT, e))
            for setting in ("shared", "half", "own"):
                for method, arm in [(m, DEFAULT) for m in AUTHORS_METHODS] + [AUTHORS_ARM]:
                    own = self.best_rung(Curve(method, DEFAULT, e))  # the arm: its method's own best
                    k = {"shared": shared, "half": shared - 2, "own": own}[setting]
                    points += [
                        Point(
                            "authors-protocol",
                            setting,
                            spec(self.task, self.profile, method, arm, e, seed, lr_clip(k), "test", self.rounds),
                        )
                        for seed in self.shape.final_seeds
                    ]
        self.run(points, "authors-protocol")

    def budget(self) -> None:
        fed = self.chosen_lr_clip("fedlora", None)
        points = [
            Point("budget", label, spec(self.task, self.profile, m, DEFAULT, None, seed, value, "test", self.rounds))
            for label, m, value in (
                ("no DP", "fedlora", fed),
                ("no DP", "lalora-nodp", fed),
                ("no DP at 2x lr", "lalora-nodp", 2 * fed),
            )
            for seed in self.shape.curve_seeds
        ]
        if self.task in DOUBLE_ROUNDS_TASKS:
            for m in ("dp-lora", "ffa-lora", "lalora"):
                value = self.chosen_lr_clip(m, 3.0)
                points += [
                    Point(
                        "budget",
                        f"rounds x{r}",
                        spec(self.task, self.profile, m, DEFAULT, 3.0, seed, value, "test", r * self.rounds),
                    )
                    for r in (1, 2)
                    for seed in self.shape.curve_seeds
                ]
        self.run(points, "budget")

    def filter_strength(self) -> None:
        tuned = self.best_rung(Curve("lalora", DEFAULT, 1.0))
        gain = white_noise_gain()
        points = []
        for method, arm in FILTER_ARMS:
            taps = get_arm(arm).filter_taps
            scaled = lr_clip(tuned) * gain / (white_noise_gain(taps) if get_method(method).smooth else 1.0)
            for setting, value in (("tuned", lr_clip(tuned)), ("gain-scaled", scaled)):
                points += [
                    Point(
                        "filter-strength",
                        setting,
                        spec(self.task, self.profile, method, arm, 1.0, seed, value, "val", self.rounds),
                    )
                    for seed in self.shape.curve_seeds
                ]
        self.run(points, "filter-strength")

    def chosen_lr_clip(self, method: str, epsilon: float | None) -> float:
        """The comparison's chosen setting as the study's lr x C (``C`` = :data:`CLIP`): the chosen lr x C of a
        private method; a non-private one clips nothing, so its chosen *lr* is kept (lr x C = lr x CLIP)."""
        rows = None if self.chosen is None else self.chosen[self.chosen["method"] == method]
        if rows is not None and not get_method(method).private:
            rows = rows[np.isinf(rows["epsilon"].astype(float))]
            if len(rows):
                return float(rows["lr"].iloc[0]) * CLIP
        elif rows is not None and len(rows[rows["epsilon"] == epsilon]):
            row = rows[rows["epsilon"] == epsilon].iloc[0]
            return float(row["lr"] * row["clip_norm"])
        return lr_clip(anchors(self.chosen, method, epsilon))

    # --- results ----------------------------------------------------------------------------------
    def table(self, experiment: str) -> pd.DataFrame:
        """Per-run rows of ``experiment`` (one per point; a run several experiments share appears in each)."""
        rows = []
        for p in dict.fromkeys(q for q in self.points if q.experiment == experiment):
            s = p.spec
            rows.append(
                {
                    "experiment": p.experiment,
                    "setting": p.setting,
                    "method": s.method,
                    "arm": s.arm or "default",
                    "epsilon": s.epsilon_target,
                    "private": get_method(s.method).private and get_arm(s.arm).private,
                    "lr": s.lr,
                    "clip_norm": s.clip_norm,
                    "lr_clip": float(f"{s.lr * s.clip_norm:.6g}"),
                    "seed": s.seed,
                    "split": s.split,
                    "rounds": s.rounds,
                    "sigma_median": self.sigma_median(s),
                    "accuracy": self.accuracy[s],
                    "run_s": self.run_s[s],
                }
            )
        return pd.DataFrame(rows)

    def sigma_median(self, s: RunSpec) -> float:
        """The median over clients of the noise multiplier a run's release uses (0 without noise)."""
        if s.epsilon is None or s.arm == CLIP_ONLY:
            return 0.0
        key = (s.seed, s.epsilon, s.rounds)
        if key not in self._sigmas:
            cfg = federated_config(s, get_profile(s.task, s.profile))
            sizes = [dataset_size(c) for c in cached_task(s.task, s.profile, s.seed).clients]
            self._sigmas[key] = float(np.median([ledger.noise_multiplier for ledger in make_ledgers(cfg, sizes)]))
        return self._sigmas[key]


def extension(means: dict[int, float], start: tuple[int, int], max_extend: int) -> list[int]:
    """The rung a curve adds next: beyond the edge its best mean sits on, if it has not yet extended
    ``max_extend`` rungs past its start on that side; ``[]`` when its best is inside (or it may not grow)."""
    if not means:
        return []
    best = max(means, key=lambda k: (means[k], -k))
    low, high = min(means), max(means)
    if best == low and low > start[0] - max_extend:
        return [low - 1]
    if best == high and high < start[1] + max_extend:
        return [high + 1]
    return []


def check_experiments(experiments: Sequence[str]) -> None:
    """Raise ``ValueError`` naming any experiment that is not one of :data:`EXPERIMENTS`."""
    unknown = [e for e in experiments if e not in EXPERIMENTS]
    if unknown:
        raise ValueError(f"unknown experiment(s) {unknown}; allowed: {', '.join(EXPERIMENTS)}")


def run_study(study: Study, experiments: Sequence[str], out: Path) -> dict[str, float]:
    """Run ``experiments`` in the order given (H2 and H5 need H1's curves: H1 runs first whenever either
    is asked for), write ``<experiment>.csv`` to ``out`` after each, and return the wall seconds each took
    in this session."""
    check_experiments(experiments)
    order = list(dict.fromkeys(experiments))
    if {"authors-protocol", "filter-strength"} & set(order) and "head-control" not in order:
        order.insert(0, "head-control")
    out.mkdir(parents=True, exist_ok=True)
    wall = {}
    for name in order:
        start = time.perf_counter()
        getattr(study, name.replace("-", "_"))()
        wall[name] = time.perf_counter() - start
        study.table(name).to_csv(out / f"{name}.csv", index=False)
    return wall


def planned(study: Study, experiments: Sequence[str]) -> int:
    """Runs the study's first wave will make (curves before extensions; H2 and H5 after H1)."""
    shape, n = study.shape, 0
    if set(experiments) & {"head-control", "authors-protocol", "filter-strength"}:
        n += len(shape.head_methods) * len(shape.curve_epsilons) * len(shape.head_offsets) * len(shape.curve_seeds)
    if "authors-protocol" in experiments:
        n += len(shape.curve_epsilons) * 3 * (len(AUTHORS_METHODS) + 1) * len(shape.final_seeds)
    if "dose-response" in experiments:
        n += len(DOSE_METHODS) * (len(DOSE_EPSILONS) + 1) * len(shape.dose_offsets) * len(shape.curve_seeds)
    if "budget" in experiments:
        n += 3 * len(shape.curve_seeds) * (3 if study.task in DOUBLE_ROUNDS_TASKS else 1)
    if "filter-strength" in experiments:
        n += len(FILTER_ARMS) * 2 * len(shape.curve_seeds)
    return n
