"""``lalora compare --quick``: re-run a stated part of a stored comparison and check it bit for bit.

The search is not run again: every re-run takes the setting the committed search chose
(``results/<task>/<profile>/chosen.csv``). By default these are the paper's methods at epsilon = 3 and
FedLoRA, on seeds 0-2 (:data:`QUICK_METHODS`, :data:`QUICK_EPSILONS`, :data:`QUICK_SEEDS`). Each run is
the very run the comparison made (same task split, setting, seed and run format), so on the same CPU
kernels (:mod:`lalora_lite.cpu_kernels`) its history must equal the committed one exactly: every
evaluated round's accuracy and loss, every round's training loss, privacy spent, clients and upload
(:data:`CHECKED`). Timings are not compared. The re-runs go to ``<runs>/quick/`` (resumable; never
the full comparison's own run folder, whose finished runs would only be read back), their tables and
figures to ``<runs>/quick/results`` and ``<runs>/quick/figures``, drawn by the code of ``lalora
figures``.

Bit-identity needs the same kind of CPU as the one that made the comparison: measured on an Intel Xeon
against the committed runs of an AMD EPYC (both with the AVX2 pins), the training loss differs in its
last bits from the first rounds (seed 0: at most 9e-8 for FFA-LoRA) and, in some runs, the difference
grows over 80 rounds. A re-run that is not bit-identical is then checked as what it is, a new draw: its
final accuracy must lie inside the 95 % *prediction* interval of the committed runs of its method and
budget (:func:`~lalora_lite.study.stats.prediction_interval`). The check fails (exit
status 1 of the command) only for a re-run that is neither.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from ..methods import get_method
from ..tasks import get_profile
from .plotting import draw_folder
from .runs import Runner, RunSpec, cpu_model, default_workers
from .stats import prediction_interval, run_table
from .stored import settings_drift

QUICK_METHODS = ("fedlora", "dp-lora", "ffa-lora", "rolora", "lalora")
QUICK_EPSILONS = (3.0,)
QUICK_SEEDS = (0, 1, 2)
CHECKED = ("accuracy", "loss", "train_loss", "epsilon_spent", "clients", "local_steps", "upload_bytes")


@dataclass(frozen=True)
class Rerun:
    """One re-run and how it compares with the committed run of the same method, budget and seed."""

    spec: RunSpec
    history: pd.DataFrame
    differing: tuple[str, ...]  # the CHECKED columns that differ (empty: bit-identical)
    committed_accuracy: float  # the committed run's final accuracy
    interval: tuple[float, float]  # the committed runs' 95 % prediction interval (this method and budget)

    @property
    def agrees(self) -> bool:
        """Bit-identical, or (on another kind of CPU) a final accuracy inside the prediction interval."""
        low, high = self.interval
        return not self.differing or low <= self.final_accuracy <= high

    @property
    def label(self) -> str:
        eps = "no DP" if self.spec.epsilon is None else f"eps={self.spec.epsilon:g}"
        return f"{self.spec.method} {eps} seed {self.spec.seed} (lr {self.spec.lr:g}, clip {self.spec.clip_norm:g})"

    @property
    def final_accuracy(self) -> float:
        return float(self.history["accuracy"].dropna().iloc[-1])

    @property
    def same_accuracy(self) -> bool:
        """The same accuracy at every evaluation (only losses differ, in their last bits)."""
        return "accuracy" not in self.differing

    @property
    def verdict(self) -> str:
        if not self.differing:
            return "bit-identical"
        if self.same_accuracy:
            return f"the same accuracy at every evaluation; {', '.join(self.differing)} differ in the last bits"
        low, high = self.interval
        where = "inside" if self.agrees else "OUTSIDE"
        return (
            f"not bit-identical (committed: {100 * self.committed_accuracy:.2f} %); {where} the committed runs' "
            f"95 % prediction interval [{100 * low:.1f}, {100 * high:.1f}]"
        )


def stored_folder(task: str, profile_name: str, results_dir: Path) -> tuple[Path, dict, pd.DataFrame, pd.DataFrame]:
    """The stored comparison's folder, ``meta.json``, ``chosen.csv`` and ``history.csv``; an error that says
    what to run where there is none, or where it was made with other settings than the code's."""
    folder = results_dir / task / profile_name
    if not (folder / "history.csv").exists() or not (folder / "chosen.csv").exists():
        raise ValueError(
            f"--quick re-runs a stored comparison, and {folder} holds none (history.csv, chosen.csv); "
            f"run the full comparison first: lalora compare --task {task} --profile {profile_name}"
        )
    meta = json.loads((folder / "meta.json").read_text())
    if drift := settings_drift(meta, task, profile_name):
        raise ValueError(
            f"the stored comparison in {folder} was made with other settings ({drift}); its runs cannot be re-run"
        )
    return folder, meta, pd.read_csv(folder / "chosen.csv"), pd.read_csv(folder / "history.csv")


def quick_specs(
    task: str,
    profile_name: str,
    chosen: pd.DataFrame,
    methods: Sequence[str],
    epsilons: Sequence[float],
    seeds: Sequence[int],
) -> list[RunSpec]:
    """The final runs to repeat: each method at each budget (once, without DP, for a non-private method) and seed,
    at the setting ``chosen`` holds for it."""
    profile = get_profile(task, profile_name)
    specs = []
    for method in methods:
        budgets = tuple(epsilons) if get_method(method).private else (math.inf,)
        for eps in budgets:
            row = chosen[(chosen["method"] == method) & (chosen["epsilon"] == eps)]
            if row.empty:
                offered = sorted({f"{m} {e:g}" for m, e in zip(chosen["method"], chosen["epsilon"])})
                raise ValueError(
                    f"the stored comparison chose no setting for {method} at epsilon={eps:g}; it has: {offered}"
                )
            lr, clip = float(row.iloc[0]["lr"]), float(row.iloc[0]["clip_norm"])
            epsilon = None if math.isinf(eps) else eps
            specs += [RunSpec(task, profile_name, method, epsilon, s, lr, clip, profile.rounds, "test") for s in seeds]
    return specs


def committed_run(history: pd.DataFrame, spec: RunSpec) -> pd.DataFrame:
    """The committed per-round history of the run ``spec`` repeats (empty if the comparison did not make it)."""
    rows = history[
        (history["method"] == spec.method)
        & (history["epsilon_target"] == spec.epsilon_target)
        & (history["seed"] == spec.seed)
    ]
    same_setting = (rows["lr"] == spec.lr) & (rows["clip_norm"] == spec.clip_norm)
    return rows[same_setting].sort_values("round").reset_index(drop=True)


def differing_columns(rerun: pd.DataFrame, committed: pd.DataFrame) -> tuple[str, ...]:
    """The :data:`CHECKED` columns in which ``rerun`` is not exactly ``committed`` (NaN equals NaN); all of them
    where the two differ in their rounds."""
    if committed.empty or list(rerun["round"]) != list(committed["round"]):
        return CHECKED
    rerun = rerun.sort_values("round").reset_index(drop=True)
    return tuple(c for c in CHECKED if not rerun[c].equals(committed[c]))


def eta_line(history: pd.DataFrame, specs: Sequence[RunSpec], workers: int) -> str:
    """What the re-runs will take, from the committed runs' own measured wall times (``run_wall_s``)."""
    runs = [committed_run(history, s) for s in specs]
    times = [run["run_wall_s"].iloc[0] for run in runs if not run.empty]
    if not times:
        return f"{len(specs)} runs; no measured time to estimate from"
    per_run, total = statistics.median(times), sum(times)
    rounds = math.ceil(len(specs) / workers)
    return (
        f"{len(specs)} runs of {specs[0].rounds} rounds on {workers} worker(s): the committed runs took "
        f"{min(times):.0f}-{max(times):.0f} s each (median {per_run:.0f} s) on the machine that made them, so about "
        f"{total / workers / 60:.0f} min on one as fast ({rounds} run(s) per worker); slower CPUs take up to about "
        "twice that (measured), and the progress bar's ETA follows this one"
    )


def quick(
    task: str,
    profile_name: str,
    methods: Sequence[str] = QUICK_METHODS,
    epsilons: Sequence[float] = QUICK_EPSILONS,
    seeds: Sequence[int] = QUICK_SEEDS,
    runs_dir: Path = Path("runs"),
    results_dir: Path = Path("results"),
    workers: int | None = None,
    progress: bool = True,
) -> tuple[list[Rerun], list[Path]]:
    """Repeat the stated runs of the stored comparison, check each against its committed history, and draw the
    figures and tables of what ran. Returns the re-runs and the files written."""
    for m in methods:
        get_method(m)
    folder, meta, chosen, history = stored_folder(task, profile_name, results_dir)
    specs = quick_specs(task, profile_name, chosen, methods, epsilons, seeds)
    workers = workers or min(default_workers(), len(specs))
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    out = runs_dir / "quick"
    tqdm.write(f"{task} [{profile_name}] --quick: re-running part of {folder} with its chosen settings")
    tqdm.write(f"estimate: {eta_line(history, specs, workers)}; finished re-runs in {out} are read back")

    def note(spec: RunSpec, rerun: pd.DataFrame) -> str:
        same = not differing_columns(rerun, committed_run(history, spec))
        accuracy = 100 * rerun["accuracy"].dropna().iloc[-1]
        return f"last: {spec.method} seed {spec.seed} {accuracy:.1f} % {'identical' if same else 'not identical'}"

    with Runner(out, workers, "cpu", progress) as runner:
        histories = runner.run(specs, "re-runs", on_result=note)
    committed_runs = run_table(history)
    reruns = []
    for s, h in zip(specs, histories):
        committed = committed_run(history, s)
        same_budget = committed_runs["epsilon_target"] == s.epsilon_target
        finals = committed_runs[(committed_runs["method"] == s.method) & same_budget]
        final = committed["accuracy"].dropna()
        reruns.append(
            Rerun(
                s,
                h,
                differing_columns(h, committed),
                float(final.iloc[-1]) if len(final) else math.nan,
                prediction_interval(finals["accuracy"]),
            )
        )
    tqdm.write(f"this CPU: {cpu_model()}; the committed comparison's: {meta.get('cpu_model', 'not recorded')}")
    for r in reruns:
        tqdm.write(f"  {r.label}: final accuracy {100 * r.final_accuracy:.2f} %, {r.verdict}")
    tables = out / "results" / task / profile_name
    tables.mkdir(parents=True, exist_ok=True)
    pd.concat(histories, ignore_index=True).to_csv(tables / "history.csv", index=False)
    keep = chosen.apply(
        lambda r: any(s.method == r["method"] and s.epsilon_target == r["epsilon"] for s in specs), axis=1
    )
    chosen[keep].to_csv(tables / "chosen.csv", index=False)
    quick_meta = {k: v for k, v in meta.items() if k not in ("wall_s_this_invocation", "search_wall_s_this_invocation")}
    quick_meta |= {
        "quick": {"of": str(folder), "methods": list(methods), "epsilons": list(epsilons), "seeds": list(seeds)}
    }
    (tables / "meta.json").write_text(json.dumps(quick_meta, indent=2, default=str))
    figures = out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    return reruns, draw_folder(tables, figures)
