"""The main job: a fair comparison of all methods x privacy budgets x seeds on one task.

1. **Search** (validation split, seed 0, ``profile.search_rounds`` rounds, epsilon =
   ``profile.search_epsilon``): every method gets the same grid of learning rates x clip
   norms; the setting with the best final validation accuracy is kept for that method.
2. **Final runs** (test split): every method x epsilon x seed with its chosen setting.

Each run keeps a checkpoint and a per-round CSV under ``runs/``; a finished run is never
recomputed and an interrupted one resumes. Tidy results go to ``results/<task>/<profile>/``:
``history.csv`` (one row per task/method/epsilon/seed/round), ``search.csv``, ``meta.json``.
"""

from __future__ import annotations

import json
import platform
import subprocess
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import pandas as pd
import torch

from .accounting import check_budget_inputs
from .federated import FederatedConfig, run_federated, validate
from .methods import get_method
from .profiles import Profile
from .tasks import build_task, get_profile
from .training import LocalConfig

PACKAGES = ("torch", "timm", "transformers", "opacus", "numpy", "pandas")


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
                        optimizer=profile.optimizer, clip_norm=spec.clip_norm)
    return FederatedConfig(spec.method, rounds=spec.rounds, clients_per_round=profile.clients_per_round, local=local,
                           epsilon=spec.epsilon, delta=profile.delta, seed=spec.seed)


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


def execute(spec: RunSpec, runs_dir: Path, progress: bool = True, device: str = "cpu") -> pd.DataFrame:
    """Run (or resume, or just read back) one run; returns its per-round history with run columns.

    The model (frozen backbone, LoRA factors, head) lives on ``device``; data stay on the CPU and
    each batch moves when it is used. All randomness derives from the run's seed; on a GPU the DP noise
    comes from a CUDA generator seeded from the CPU stream (see :func:`privacy.gaussian_noise`).
    """
    target = resolve_device(device)
    profile = get_profile(spec.task, spec.profile)
    out = runs_dir / spec.task / spec.profile
    out.mkdir(parents=True, exist_ok=True)
    done = out / f"{spec.run_id}.csv"
    if done.exists():
        return pd.read_csv(done)
    cfg = federated_config(spec, profile)
    validate(cfg, profile.num_clients)  # before building the task (which may pretrain a backbone)
    task = build_task(spec.task, spec.profile, spec.seed)
    task.backbone.model.to(target)
    evaluation = task.val if spec.split == "val" else task.test
    start = time.perf_counter()
    history = run_federated(task.backbone, task.clients, evaluation, cfg, checkpoint=out / f"{spec.run_id}.pt",
                            progress=progress)
    history.insert(0, "task", spec.task)
    history.insert(1, "profile", spec.profile)
    history["lr"], history["clip_norm"], history["split"] = spec.lr, spec.clip_norm, spec.split
    history["run_wall_s"] = time.perf_counter() - start  # this session only, if it resumed
    history.to_csv(done, index=False)
    return history


def search_specs(task: str, profile_name: str, profile: Profile, methods: tuple[str, ...]) -> list[RunSpec]:
    specs = []
    for method in methods:
        private = get_method(method).private
        clips = profile.clip_grid if private else profile.clip_grid[:1]  # clipping is unused without DP
        for lr in profile.lr_grid:
            for clip in clips:
                eps = profile.search_epsilon if private else None
                specs.append(RunSpec(task, profile_name, method, eps, 0, lr, clip, profile.search_rounds, "val"))
    return specs


def choose(search: pd.DataFrame) -> dict[str, tuple[float, float]]:
    """Best (lr, clip) per method by final validation accuracy (first in grid order on ties)."""
    last = search[search["round"] == search.groupby(["method", "lr", "clip_norm"])["round"].transform("max")]
    best = last.sort_values("accuracy", ascending=False, kind="stable").groupby("method", sort=False).head(1)
    return {row.method: (row.lr, row.clip_norm) for row in best.itertuples()}


def compare(task: str, profile_name: str, methods: tuple[str, ...] | None = None,
            epsilons: tuple[float, ...] | None = None, seeds: tuple[int, ...] | None = None,
            runs_dir: Path = Path("runs"), results_dir: Path = Path("results"), progress: bool = True,
            device: str = "cpu") -> pd.DataFrame:
    """Search, then all final runs; writes the tidy results and returns the final history."""
    target = resolve_device(device)
    profile = get_profile(task, profile_name)
    methods = methods or profile.methods
    for m in methods:
        get_method(m)
    epsilons, seeds = epsilons or profile.epsilons, seeds or profile.seeds
    for eps in epsilons:
        check_budget_inputs(eps, profile.delta, 1.0, 1)

    started = time.perf_counter()
    search = pd.concat([execute(s, runs_dir, progress, device) for s in search_specs(task, profile_name, profile, methods)])
    chosen = choose(search)
    finals = []
    for method in methods:
        lr, clip = chosen[method]
        budgets = epsilons if get_method(method).private else (None,)
        for eps in budgets:
            for seed in seeds:
                spec = RunSpec(task, profile_name, method, eps, seed, lr, clip, profile.rounds, "test")
                finals.append(execute(spec, runs_dir, progress, device))
    history = pd.concat(finals, ignore_index=True)

    out = results_dir / task / profile_name
    out.mkdir(parents=True, exist_ok=True)
    history.to_csv(out / "history.csv", index=False)
    search.to_csv(out / "search.csv", index=False)
    meta = {
        "task": task, "profile": profile_name, "profile_settings": profile.__dict__,
        "methods": list(methods), "epsilons": list(epsilons), "seeds": list(seeds),
        "chosen": {m: {"lr": lr, "clip_norm": c} for m, (lr, c) in chosen.items()},
        "versions": {p: version(p) for p in PACKAGES} | {"python": platform.python_version()},
        "git_commit": _git_commit(), "device": torch.cuda.get_device_name(target) if target.type == "cuda" else "cpu",
        "wall_s_this_invocation": time.perf_counter() - started,
        "run_wall_s": {"search": float(search.groupby(["method", "lr", "clip_norm"])["run_wall_s"].first().sum()),
                       "final": float(history.groupby(["method", "epsilon_target", "seed"])["run_wall_s"].first().sum())},
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2, default=str))
    return history


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
