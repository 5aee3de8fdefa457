"""The main job: a fair comparison of all methods x privacy budgets x seeds on one task.

1. **Search** (:mod:`lalora_lite.search`; validation split, seed ``profile.seeds[0]``): at *every*
   budget each method gets the same log-spaced grid of learning rates x clip norms, widened while
   its best point lies on an edge; the best point per method and budget is kept.
2. **Final runs** (test split): every method x budget x seed with its chosen setting.

Runs are independent: they go to ``workers`` processes (one thread each, so results do not depend on
the number of workers or cores). Each run keeps a checkpoint and a per-round CSV under ``runs/``; a
finished run is never recomputed and an interrupted one resumes. Tidy results go to
``results/<task>/<profile>/``: ``history.csv`` (one row per task/method/epsilon/seed/round),
``search.csv``, ``chosen.csv``, ``meta.json`` (settings, versions, wall time and per-phase profile).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import platform
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from dataclasses import replace as dataclasses_replace
from functools import lru_cache
from importlib.metadata import version
from multiprocessing import get_context
from pathlib import Path
from typing import TypeVar

import pandas as pd
import torch
from tqdm.auto import tqdm

from . import cpu_kernels
from .accounting import check_budget_inputs
from .federated import FederatedConfig, run_federated, validate
from .methods import get_method
from .profiles import Profile, default_settings
from .search import GridSearch, check_grid, score
from .stats import PUBLIC_TUNING
from .tasks import TASKS, Task, build_task, get_profile, get_task
from .training import LocalConfig

PACKAGES = ("torch", "timm", "transformers", "opacus", "numpy", "pandas", "seaborn")
RUN_THREADS = 1  # torch threads per run: results are then the same for any number of workers
T = TypeVar("T")
PHASES = ("build_s", "setup_s", "train_s", "eval_s")  # where a run's time goes (see :func:`execute`)


@dataclass(frozen=True)
class RunSpec:
    """One federated run of the comparison."""

    task: str
    profile: str
    method: str
    epsilon: float | None  # None for the non-private method
    seed: int
    lr: float
    clip_norm: float
    rounds: int
    split: str  # "val" (search) or "test" (final)

    @property
    def run_id(self) -> str:
        eps = "nodp" if self.epsilon is None else f"eps{self.epsilon:g}"
        return f"{self.split}_{self.method}_{eps}_seed{self.seed}_lr{self.lr:g}_clip{self.clip_norm:g}_r{self.rounds}"


def federated_config(spec: RunSpec, profile: Profile) -> FederatedConfig:
    local = LocalConfig(local_steps=profile.local_steps, batch_size=profile.batch_size, lr=spec.lr,
                        optimizer=profile.optimizer, clip_norm=spec.clip_norm, precision=profile.precision)
    return FederatedConfig(spec.method, rounds=spec.rounds, clients_per_round=profile.clients_per_round, local=local,
                           epsilon=spec.epsilon, delta=profile.delta, count_steps=profile.count_steps,
                           lr_schedule=profile.lr_schedule, eval_every=profile.eval_every, seed=spec.seed)


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N``; an unknown or unavailable device is an error (before any work)."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}; allowed: cpu, cuda, cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {name!r}; allowed: cpu, cuda, cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but torch sees no CUDA GPU; use --device cpu")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s) visible")
    return device


SEARCH_ONLY = ("lr_grid", "clip_grid", "search_rounds", "epsilons", "seeds", "methods", "max_widen")
# Raised whenever a code change alters what a run with unchanged settings computes, so that runs
# stored by older code are not read back. 2: the server stops picking clients whose budget is spent;
# 3: a Hugging Face model's fresh head is drawn from the run's seed.
RUN_FORMAT = 3


def run_digest(profile: Profile) -> str:
    """8 hex digits naming every profile setting that shapes a single run (data, federation, training)
    and :data:`RUN_FORMAT`, so that a stored run made under other settings or by older code is never
    read back as this one. Settings at their declared default are left out: adding a new setting to
    :class:`Profile` does not orphan the runs already stored (changing a default must raise
    :data:`RUN_FORMAT`)."""
    defaults = default_settings()
    shaping = {k: v for k, v in sorted(profile.__dict__.items())
               if k not in SEARCH_ONLY and (k not in defaults or v != defaults[k])}
    shaping["format"] = RUN_FORMAT
    return hashlib.sha256(json.dumps(shaping, default=str).encode()).hexdigest()[:8]


@lru_cache(maxsize=4)
def _built_task(task: str, profile: str, seed: int) -> Task:
    return build_task(task, profile, seed)


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch threads, then restore the caller's setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def execute(spec: RunSpec, runs_dir: Path, progress: bool = True, device: str = "cpu") -> pd.DataFrame:
    """Run (or resume, or just read back) one run; returns its per-round history with run columns.

    The built task (data split, pretrained backbone with fresh LoRA and head) is cached per process
    and the run trains a copy, so consecutive runs of one seed start from identical states without
    rebuilding. The model lives on ``device``; data stay on the CPU and each batch moves when it is
    used. All randomness derives from the run's seed; on a GPU the DP noise comes from a CUDA
    generator seeded from the CPU stream (see :func:`privacy.gaussian_noise`). Timings per run:
    ``build_s`` (building the task, 0 when cached), ``setup_s`` (ledgers: noise calibration),
    ``train_s`` and ``eval_s`` (summed over rounds).
    """
    target = resolve_device(device)
    profile = get_profile(spec.task, spec.profile)
    out = runs_dir / spec.task / spec.profile
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{spec.run_id}_{run_digest(profile)}"
    done = out / f"{stem}.csv"
    if done.exists():
        return pd.read_csv(done)
    cfg = federated_config(spec, profile)
    validate(cfg, profile.num_clients)  # before building the task (which may pretrain a backbone)
    start = time.perf_counter()
    task = _built_task(spec.task, spec.profile, spec.seed)
    build_s = time.perf_counter() - start
    backbone = copy.deepcopy(task.backbone)
    backbone.model.to(target)
    evaluation = task.val if spec.split == "val" else task.test
    start = time.perf_counter()
    history = run_federated(backbone, task.clients, evaluation, cfg, checkpoint=out / f"{stem}.pt",
                            progress=progress)
    history.insert(0, "task", spec.task)
    history.insert(1, "profile", spec.profile)
    history["lr"], history["clip_norm"], history["split"] = spec.lr, spec.clip_norm, spec.split
    history["run_wall_s"] = time.perf_counter() - start  # this session only, if it resumed
    history["build_s"] = build_s
    history.to_csv(done, index=False)
    return history


def _execute_quietly(spec: RunSpec, runs_dir: Path, device: str) -> pd.DataFrame:
    with torch_threads(RUN_THREADS):
        return execute(spec, runs_dir, progress=False, device=device)


class Runner:
    """Executes independent runs, in ``workers`` processes when > 1 (started once, on first use, and
    kept for the whole comparison so that each worker builds a task only once)."""

    def __init__(self, runs_dir: Path, workers: int = 1, device: str = "cpu", progress: bool = True) -> None:
        self.runs_dir, self.workers, self.device, self.progress = runs_dir, workers, device, progress
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)

    def call(self, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args)`` where the runs execute: in this process with one worker, else in a worker
        (whose per-process caches the runs then share)."""
        if self.workers == 1:
            return fn(*args)
        return self._executor().submit(fn, *args).result()

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=get_context("spawn"))
        return self._pool

    def run(self, specs: Sequence[RunSpec], desc: str = "runs") -> list[pd.DataFrame]:
        """The histories of ``specs``, in order.

        They execute grouped by seed (a stable sort): each process caches its last 4 built tasks
        (``_built_task``), one per seed, and cycling through 5 seeds method by method would rebuild
        the task for every run (about 2 min on the text stand-in). Runs are independent, so the
        order changes no result."""
        order = sorted(range(len(specs)), key=lambda i: (specs[i].task, specs[i].profile, specs[i].seed))
        bar = tqdm(total=len(specs), desc=desc, disable=not self.progress)
        results: dict[int, pd.DataFrame] = {}
        if self.workers == 1:
            for i in order:
                results[i] = _execute_quietly(specs[i], self.runs_dir, self.device)
                bar.update()
        else:
            pool = self._executor()
            futures = {pool.submit(_execute_quietly, specs[i], self.runs_dir, self.device): i for i in order}
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                bar.update()
        bar.close()
        return [results[i] for i in range(len(specs))]


def default_workers() -> int:
    """One worker per available core (``os.sched_getaffinity`` where the platform has it)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores)


def planned_runs(profile: Profile, method: str) -> tuple[int, int]:
    """``(search runs before any widening, final runs)`` of ``method`` in a comparison: a private
    method searches lr x clip at every epsilon, the non-private one the lrs once; final runs are one
    per budget and seed."""
    runs_at = len(budgets(method, profile.epsilons))
    points = len(profile.lr_grid) * (len(profile.clip_grid) if get_method(method).private else 1)
    return runs_at * points, runs_at * len(profile.seeds)


def count_test_labels(task: str, profile: str, seed: int) -> torch.Tensor:
    """Examples per class in the test split (the same for every seed), from the cached built task."""
    return torch.bincount(_built_task(task, profile, seed).test["labels"])


def budgets(method: str, epsilons: Sequence[float]) -> tuple[float | None, ...]:
    """The budgets a method runs at: every epsilon, or ``None`` (no DP) for a non-private method."""
    return tuple(epsilons) if get_method(method).private else (None,)


def search_clips(profile: Profile, method: str) -> tuple[float, ...]:
    """The clip norms a search starts from: the profile's grid, or its first value for a non-private
    method (which clips nothing, so the clip norm only names its runs)."""
    return profile.clip_grid if get_method(method).private else profile.clip_grid[:1]


def search_spec(task: str, profile_name: str, profile: Profile, method: str, epsilon: float | None, seed: int,
                lr: float, clip_norm: float) -> RunSpec:
    """One search run: ``profile.search_rounds`` rounds scored on the validation split of ``seed``."""
    return RunSpec(task, profile_name, method, epsilon, seed, lr, clip_norm, profile.search_rounds, "val")


def search(task: str, profile_name: str, profile: Profile, methods: Sequence[str], epsilons: Sequence[float],
           runner: Runner) -> tuple[list[GridSearch], pd.DataFrame]:
    """Every method's grid search at every budget (widened until no best point is on an edge)."""
    searches = [GridSearch(m, eps, profile.lr_grid, search_clips(profile, m), profile.max_widen, profile.val_size)
                for m in methods for eps in budgets(m, epsilons)]
    histories, open_searches, step = [], list(searches), 0
    while open_searches:
        step += 1
        jobs = [(s, p) for s in open_searches for p in s.pending()]
        specs = [search_spec(task, profile_name, profile, s.method, s.epsilon, profile.seeds[0], lr, clip)
                 for s, (lr, clip) in jobs]
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
        raise ValueError(f"task {task!r} has no public data to tune on; tune_on='public' is offered for: "
                         f"{', '.join(with_public)}")
    return public


def chosen_setting(results_dir: Path, task: str, profile: str, method: str, epsilon: float | None) -> tuple[float, float]:
    """``(lr, clip_norm)`` that the stored comparison chose for ``method`` at ``epsilon`` (``None``: no DP)."""
    chosen = pd.read_csv(results_dir / task / profile / "chosen.csv")
    eps = math.inf if epsilon is None else epsilon
    row = chosen[(chosen["method"] == method) & (chosen["epsilon"] == eps)]
    if row.empty:
        raise ValueError(f"no chosen setting for {method!r} at epsilon={epsilon} in {results_dir / task / profile}")
    return float(row.iloc[0]["lr"]), float(row.iloc[0]["clip_norm"])


def compare(task: str, profile_name: str, methods: tuple[str, ...] | None = None,
            epsilons: tuple[float, ...] | None = None, seeds: tuple[int, ...] | None = None,
            runs_dir: Path = Path("runs"), results_dir: Path = Path("results"), progress: bool = True,
            device: str = "cpu", workers: int | None = None, tune_on: str = "private") -> pd.DataFrame:
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
    search_profile = dataclasses_replace(get_profile(search_task, profile_name), seeds=profile.seeds,
                                         epsilons=profile.epsilons)

    if progress:
        search_runs, final_runs = (sum(n) for n in zip(*(planned_runs(profile, m) for m in methods)))
        tqdm.write(f"{task} [{profile_name}]: {search_runs} search runs of {profile.search_rounds} rounds (more if a "
                   f"grid widens), then {final_runs} final runs of {profile.rounds} rounds, on {workers} worker(s); "
                   f"finished runs in {runs_dir} are read back (benchmarks/compare_profile.py projects the time)")
    started = time.perf_counter()
    with Runner(runs_dir, workers, device, progress) as runner:
        counts = runner.call(count_test_labels, task, profile_name, seeds[0]).double()  # builds where runs do
        searches, search_history = search(search_task, profile_name, search_profile, methods, epsilons, runner)
        search_wall = time.perf_counter() - started
        specs = [RunSpec(task, profile_name, s.method, s.epsilon, seed, *s.best(), profile.rounds, "test")
                 for s in searches for seed in seeds]
        history = pd.concat(runner.run(specs, "final runs"), ignore_index=True)

    out = results_dir / task / (profile_name if tune_on == "private" else profile_name + PUBLIC_TUNING)
    out.mkdir(parents=True, exist_ok=True)
    history.to_csv(out / "history.csv", index=False)
    search_history.to_csv(out / "search.csv", index=False)
    chosen = pd.DataFrame([s.chosen_row() for s in searches])
    chosen.to_csv(out / "chosen.csv", index=False)
    meta = {
        "task": task, "profile": profile_name, "profile_settings": profile.__dict__,
        "methods": list(methods), "epsilons": list(epsilons), "seeds": list(seeds), "search_seed": seeds[0],
        "tuned_on": tune_on, "search_task": search_task,
        "chosen": {m: {("none" if math.isinf(r.epsilon) else f"{r.epsilon:g}"): {"lr": r.lr, "clip_norm": r.clip_norm}
                       for r in chosen[chosen["method"] == m].itertuples()} for m in methods},
        "test_chance": 1.0 / len(counts), "test_majority": float(counts.max() / counts.sum()),
        "versions": {p: version(p) for p in PACKAGES} | {"python": platform.python_version()},
        "git_commit": _git_commit(), "device": torch.cuda.get_device_name(target) if target.type == "cuda" else "cpu",
        "cpu_kernels": {"capability": torch.backends.cpu.get_cpu_capability(),
                        **{name: os.environ.get(name) for name in (*cpu_kernels.PINS, cpu_kernels.SWITCH)}},
        "workers": workers, "threads_per_run": RUN_THREADS,
        "wall_s_this_invocation": time.perf_counter() - started, "search_wall_s_this_invocation": search_wall,
        "profile_s": {"search": phase_profile(search_history), "final": phase_profile(history)},
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2, default=str))
    return history


def phase_profile(history: pd.DataFrame) -> dict[str, float]:
    """Seconds summed over the runs of ``history`` per phase (:data:`PHASES`) and the number of runs
    (of this invocation: a run read back from ``runs/`` keeps the times it was made with)."""
    per_run = history.groupby(["method", "epsilon_target", "seed", "lr", "clip_norm"])
    first = per_run[["build_s", "setup_s"]].first().sum()
    summed = per_run[["train_s", "eval_s"]].sum().sum()
    return {"runs": int(per_run.ngroups), **{k: float(v) for k, v in first.items()},
            **{k: float(v) for k, v in summed.items()}}


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
