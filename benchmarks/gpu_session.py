"""Every GPU measurement the project still owes, in one prepared run that keeps what it finished.

GPU time is lent in minutes, so this script runs the parts in order, each in its own process under its own
time limit, and rewrites its JSON after every part (a part cut off by its limit is recorded as such, with
its output's tail; the runs of a comparison it finished stay under ``--runs`` and are read back by a rerun):

1. ``dp_step``: our DP step against the non-private one (LoRA on A and B), Swin-B at 224 px and
   RoBERTa-base at 128 tokens, batches 16, 32 and 64, interleaved, with ``--check`` against the
   per-example loop (``benchmarks/dp_step.py --size paper``); its own JSON is embedded.
2. ``wide``: the wide stand-in, pretraining included (``lalora compare --task fmnist-swin-wide --profile gpu
   --device cuda --workers W``): 4 methods x 2 budgets x 3 seeds after the search.
3. ``stand_in``: the committed cpu-profile comparison of ``fmnist-swin`` on the GPU, ``W`` runs at once
   (``lalora compare --task fmnist-swin --profile cpu --device cuda --workers W``, results in a scratch
   folder); its wall time, and each method's mean final accuracy against the committed CPU interval.

``--tiny`` runs the same parts on the CPU at tiny sizes (``dp_step --size tiny``, the ``smoke`` profiles),
to check the script before any GPU time is spent (``tests/test_benchmarks.py`` does).

Usage:
  python benchmarks/gpu_session.py --out benchmarks/results/gpu_session-h100.json          (about 8 min)
  python benchmarks/gpu_session.py --tiny --out /tmp/gpu_session-tiny.json                  (CPU check)
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("dp_step", "wide", "stand_in")
# seconds per part on the GPU: together about 8 minutes, so that a 15-minute loan has room for a rerun
LIMITS = {"dp_step": 150, "wide": 180, "stand_in": 150}


def commands(part: str, tiny: bool, workers: int, runs: Path, scratch: Path) -> list[str]:
    """The command line of one part (``tiny``: its CPU check)."""
    lalora = [sys.executable, "-m", "lalora_lite.cli"]
    device = ["--device", "cpu" if tiny else "cuda"]
    if part == "dp_step":
        size = (
            ["--size", "tiny", "--batches", "4", "--repeats", "2"]
            if tiny
            else ["--size", "paper", "--batches", "16", "32", "64"]
        )
        variants = ["--variants", "non-private AB", "dp AB"]
        return [
            sys.executable,
            str(ROOT / "benchmarks" / "dp_step.py"),
            *size,
            *device,
            *variants,
            "--check",
            "--out",
            str(scratch / "dp_step.json"),
        ]
    profile = "smoke" if tiny else ("gpu" if part == "wide" else "cpu")
    task = "fmnist-swin-wide" if part == "wide" else "fmnist-swin"
    outputs = ["--runs", str(runs), "--results", str(scratch / "results"), "--figures", str(scratch / "figures")]
    subset = ["--methods", "fedlora", "lalora"] if tiny and part == "stand_in" else []  # the check only needs the path
    return [
        *lalora,
        "compare",
        "--task",
        task,
        "--profile",
        profile,
        *device,
        "--workers",
        str(workers),
        *outputs,
        *subset,
    ]


def stand_in_agreement(scratch: Path, profile: str) -> list[dict]:
    """Each method and budget of the GPU comparison (at ``profile``): its mean final accuracy, and whether it lies
    inside the committed CPU comparison's 95 % interval (the GPU draws its own noise: per-run identity is not
    expected). The test: every method's mean inside its CPU interval."""
    sys.path.insert(0, str(ROOT))
    from lalora_lite.study.stats import run_table, summary

    gpu = summary(run_table(pd.read_csv(scratch / "results" / "fmnist-swin" / profile / "history.csv")))
    cpu = summary(run_table(pd.read_csv(ROOT / "results" / "fmnist-swin" / "cpu" / "history.csv")))
    rows = []
    for r in gpu.itertuples():
        ref = cpu[(cpu["method"] == r.method) & (cpu["epsilon"] == r.epsilon)]
        low, high = (ref["ci_low"].iloc[0], ref["ci_high"].iloc[0]) if not ref.empty else (math.nan, math.nan)
        rows.append({"method": r.method, "epsilon": r.epsilon, "gpu_mean": r.mean, "cpu_ci": [low, high],
                     "inside": bool(low <= r.mean <= high)})  # fmt: skip
    return rows


def run_part(part: str, args: argparse.Namespace, scratch: Path) -> dict:
    cmd = commands(part, args.tiny, args.workers, Path(args.runs), scratch)
    limit = args.limit or LIMITS[part]
    started = time.perf_counter()
    try:
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=limit)
        status, tail = ("ok" if out.returncode == 0 else f"exit {out.returncode}"), (out.stdout + out.stderr)[-3000:]
    except subprocess.TimeoutExpired as err:
        status, tail = (
            f"cut off at {limit} s",
            ((err.stdout or b"") + (err.stderr or b"")).decode(errors="replace")[-3000:],
        )
    record = {"command": " ".join(cmd), "status": status, "wall_s": time.perf_counter() - started, "output_tail": tail}
    if part == "dp_step" and (scratch / "dp_step.json").exists():
        record["result"] = json.loads((scratch / "dp_step.json").read_text())
    if part == "stand_in" and status == "ok":
        record["agreement"] = stand_in_agreement(scratch, "smoke" if args.tiny else "cpu")
    return record


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="the JSON file, rewritten after every part")
    parser.add_argument("--tiny", action="store_true", help="the CPU check: every part at a tiny size")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--workers", type=int, default=4, help="runs at once on the one GPU (parts 2 and 3)")
    parser.add_argument("--runs", default="runs", help="the comparisons' run folder (resumable)")
    parser.add_argument("--limit", type=int, help="seconds per part (default: each part's own)")
    args = parser.parse_args()
    if args.workers < 1:
        parser.error(f"--workers must be >= 1, got {args.workers}")
    device = "cpu (tiny)"
    if not args.tiny:
        import torch

        if not torch.cuda.is_available():
            parser.error("no CUDA GPU visible; --tiny checks the script on the CPU")
        device = torch.cuda.get_device_name(0)
    limits = {p: args.limit or LIMITS[p] for p in args.parts}
    print(
        f"gpu_session on {device}: parts {', '.join(args.parts)}, at most {sum(limits.values()) / 60:.1f} min",
        flush=True,
    )
    report = {"device": device, "python": platform.python_version(), "parts": {}}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        for part in args.parts:
            print(f"{part}: up to {limits[part]} s", flush=True)
            report["parts"][part] = run_part(part, args, Path(scratch))
            out.write_text(json.dumps(report, indent=2, default=str))
            print(f"{part}: {report['parts'][part]['status']} in {report['parts'][part]['wall_s']:.0f} s", flush=True)
    print(f"wrote {out}")
    return 0 if all(p["status"] == "ok" for p in report["parts"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
