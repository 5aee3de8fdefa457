"""One run of the comparison, stored and resumable, and the pool of worker processes that runs many.

A run (:class:`RunSpec`: task, profile, method, budget, seed, lr, clip norm) trains with
:func:`~lalora_lite.federated.run_federated` and keeps a checkpoint and a per-round CSV under
``runs/<digest>/``, named by :func:`run_digest` (every profile setting that shapes a run and
:data:`RUN_FORMAT`), so that a finished run is never recomputed, an interrupted one resumes, and a run
stored under other settings or by older code is never read back as this one. :class:`Runner` sends runs
to ``workers`` processes with one torch thread each, so results do not depend on the number of workers
or cores.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import platform
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from multiprocessing import get_context
from pathlib import Path
from typing import TypeVar

import pandas as pd
import torch
from tqdm.auto import tqdm

from ..federated import FederatedConfig, run_federated, validate
from ..tasks import Task, build_task, get_profile
from ..tasks.profiles import Profile, default_settings
from ..training import LocalConfig
from .arms import DEFAULT, get_arm

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
    arm: str = DEFAULT  # the explanation study's arms (study.arms); the comparison runs the default only

    @property
    def epsilon_target(self) -> float:
        """The budget as the histories store it: ``inf`` for the non-private method."""
        return math.inf if self.epsilon is None else self.epsilon

    @property
    def run_id(self) -> str:
        eps = "nodp" if self.epsilon is None else f"eps{self.epsilon:g}"
        arm = f"_{self.arm}" if self.arm != DEFAULT else ""
        run = f"{self.split}_{self.method}{arm}_{eps}_seed{self.seed}_lr{self.lr:g}_clip{self.clip_norm:g}"
        return f"{run}_r{self.rounds}"


def federated_config(spec: RunSpec, profile: Profile) -> FederatedConfig:
    local = LocalConfig(
        local_steps=profile.local_steps,
        batch_size=profile.batch_size,
        lr=spec.lr,
        optimizer=profile.optimizer,
        clip_norm=spec.clip_norm,
        precision=profile.precision,
        filter_taps=get_arm(spec.arm).filter_taps,
    )
    return FederatedConfig(
        spec.method,
        rounds=spec.rounds,
        clients_per_round=profile.clients_per_round,
        local=local,
        epsilon=spec.epsilon,
        delta=profile.delta,
        count_steps=profile.count_steps,
        lr_schedule=profile.lr_schedule,
        eval_every=profile.eval_every,
        seed=spec.seed,
    )


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
# stored by older code are not read back (each step is in docs/CHANGELOG.md).
RUN_FORMAT = 3


def run_digest(profile: Profile) -> str:
    """8 hex digits naming every profile setting that shapes a single run (data, federation, training)
    and :data:`RUN_FORMAT`, so that a stored run made under other settings or by older code is never
    read back as this one. Settings at their declared default are left out: adding a new setting to
    :class:`Profile` does not orphan the runs already stored (changing a default must raise
    :data:`RUN_FORMAT`)."""
    defaults = default_settings()
    shaping = {
        k: v
        for k, v in sorted(profile.__dict__.items())
        if k not in SEARCH_ONLY and (k not in defaults or v != defaults[k])
    }
    shaping["format"] = RUN_FORMAT
    return hashlib.sha256(json.dumps(shaping, default=str).encode()).hexdigest()[:8]


@lru_cache(maxsize=4)
def cached_task(task: str, profile: str, seed: int) -> Task:
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
    task = cached_task(spec.task, spec.profile, spec.seed)
    build_s = time.perf_counter() - start
    backbone = copy.deepcopy(task.backbone)
    backbone.model.to(target)
    evaluation = task.val if spec.split == "val" else task.test
    start = time.perf_counter()
    release = get_arm(spec.arm).release
    history = run_federated(
        backbone, task.clients, evaluation, cfg, checkpoint=out / f"{stem}.pt", progress=progress, release=release
    )
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

    def run(
        self,
        specs: Sequence[RunSpec],
        desc: str = "runs",
        on_result: Callable[[RunSpec, pd.DataFrame], str] | None = None,
    ) -> list[pd.DataFrame]:
        """The histories of ``specs``, in order; ``on_result(spec, history)`` after each run gives the
        progress bar's note (e.g. the accuracy the run reached).

        They execute grouped by seed (a stable sort): each process caches its last 4 built tasks
        (``cached_task``), one per seed, and cycling through 5 seeds method by method would rebuild
        the task for every run (about 2 min on the text stand-in). Runs are independent, so the
        order changes no result."""
        order = sorted(range(len(specs)), key=lambda i: (specs[i].task, specs[i].profile, specs[i].seed))
        bar = tqdm(total=len(specs), desc=desc, disable=not self.progress)
        results: dict[int, pd.DataFrame] = {}
        if self.workers == 1:
            for i in order:
                results[i] = _execute_quietly(specs[i], self.runs_dir, self.device)
                _advance(bar, on_result, specs[i], results[i])
        else:
            pool = self._executor()
            futures = {pool.submit(_execute_quietly, specs[i], self.runs_dir, self.device): i for i in order}
            for future in as_completed(futures):
                i = futures[future]
                results[i] = future.result()
                _advance(bar, on_result, specs[i], results[i])
        bar.close()
        return [results[i] for i in range(len(specs))]


def _advance(
    bar: tqdm, on_result: Callable[[RunSpec, pd.DataFrame], str] | None, spec: RunSpec, history: pd.DataFrame
) -> None:
    if on_result is not None:
        bar.set_postfix_str(on_result(spec, history), refresh=False)
    bar.update()


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else the platform's processor string)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def default_workers() -> int:
    """One worker per available core (``os.sched_getaffinity`` where the platform has it)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores)


def measured_eta(folder: Path, search_runs: int, final_runs: int, workers: int) -> str | None:
    """An estimate of a comparison's wall time from the per-run times the stored comparison in ``folder``
    measured (``meta.json``'s ``profile_s``), or ``None`` where there is none to go by."""
    meta_path = folder / "meta.json"
    if not meta_path.exists():
        return None
    phases = json.loads(meta_path.read_text()).get("profile_s", {})

    def per_run(phase: str) -> float | None:
        p = phases.get(phase, {})
        return sum(p.get(k, 0.0) for k in ("setup_s", "train_s", "eval_s")) / p["runs"] if p.get("runs") else None

    search_s, final_s = per_run("search"), per_run("final")
    if search_s is None or final_s is None:
        return None
    hours = (search_runs * search_s + final_runs * final_s) / workers / 3600
    return (
        f"estimate: about {hours:.1f} h on {workers} worker(s), from the stored comparison's measured "
        f"{search_s:.0f} s per search run and {final_s:.0f} s per final run ({folder}; machines differ: "
        "the progress bars' ETA follows this one)"
    )
