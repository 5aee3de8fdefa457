"""Is a stand-in's training step bound by arithmetic or by per-operation overhead?

For one task and profile, one thread (as ``lalora compare`` runs it): the time per example of

* a DP step (``training.step_gradient``: per-example gradients, clipping, noise) and
* a plain forward + backward of the summed loss (no per-example work),

at several batch sizes, measured in turns in one process (``--repeats`` each, after a warm-up), with
the FLOPs per example counted by ``torch.utils.flop_counter`` and the rate they imply. If the time
per example falls steeply with the batch, fixed per-operation costs dominate and batching several
runs into one model would pay; if it stays flat, the step is bound by arithmetic, and only fewer or
cheaper steps make a comparison faster.

Usage:
  python benchmarks/step_scaling.py --task fmnist-swin --profile cpu --batches 8 32 128 512
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from lalora_lite.data import Dataset
from lalora_lite.study.runs import RUN_THREADS, cached_task, torch_threads
from lalora_lite.tasks import get_profile
from lalora_lite.training import DPNoise, step_gradient, summed_loss


def _plain_step(model: torch.nn.Module, params: dict[str, torch.nn.Parameter], batch: Dataset) -> None:
    torch.autograd.grad(summed_loss(model, batch), list(params.values()))


def _dp_step(model: torch.nn.Module, params: dict[str, torch.nn.Parameter], batch: Dataset) -> None:
    b = len(batch["labels"])
    dp = DPNoise(noise_multiplier=1.0, sample_rate=0.05, clip_norm=1.0, expected_batch_size=b)
    step_gradient(model, params, params, batch, dp, torch.Generator().manual_seed(0))


def flops_per_example(model: torch.nn.Module, params: dict[str, torch.nn.Parameter], batch: Dataset) -> float:
    """FLOPs of one plain forward + backward, per example."""
    with FlopCounterMode(display=False) as counter:
        _plain_step(model, params, batch)
    return counter.get_total_flops() / len(batch["labels"])


def measure(task: str, profile_name: str, batches: list[int], repeats: int) -> dict:
    built = cached_task(task, profile_name, get_profile(task, profile_name).seeds[0])  # cached per process
    model = built.backbone.model.train()
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    pool = {k: torch.cat([c[k] for c in built.clients]) for k in built.clients[0]}  # every client's examples
    if max(batches) > len(pool["labels"]):
        raise ValueError(f"batch sizes must be at most the {len(pool['labels'])} training examples, got {max(batches)}")
    rows = []
    for b in batches:
        batch = {k: v[:b] for k, v in pool.items()}
        steps = {"dp": _dp_step, "plain": _plain_step}
        for step in steps.values():  # warm-up
            step(model, params, batch)
        times: dict[str, list[float]] = {name: [] for name in steps}
        for r in range(repeats):
            for name in ("dp", "plain") if r % 2 == 0 else ("plain", "dp"):  # in turns
                start = time.perf_counter()
                steps[name](model, params, batch)
                times[name].append((time.perf_counter() - start) / b)
        flops = flops_per_example(model, params, batch)
        row = {"batch": b, "flops_per_example": flops}
        for name, t in times.items():
            row |= {
                f"{name}_ms_per_example": 1e3 * statistics.median(t),
                f"{name}_ms_min": 1e3 * min(t),
                f"{name}_ms_max": 1e3 * max(t),
            }
        row["plain_gflops_per_s"] = flops / (row["plain_ms_per_example"] / 1e3) / 1e9
        row["dp_over_plain"] = row["dp_ms_per_example"] / row["plain_ms_per_example"]
        rows.append(row)
    return {
        "task": task,
        "profile": profile_name,
        "threads": RUN_THREADS,
        "repeats": repeats,
        "cpu": torch.backends.cpu.get_cpu_capability(),
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="fmnist-swin")
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 32, 128, 512])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    if min(args.batches) < 1 or args.repeats < 1:
        parser.error(f"batch sizes and --repeats must be >= 1, got {args.batches} and {args.repeats}")
    with torch_threads(RUN_THREADS):
        result = measure(args.task, args.profile, args.batches, args.repeats)
    print(f"{args.task} [{args.profile}], {RUN_THREADS} thread, median (min-max) of {args.repeats} in turns")
    print(f"{'batch':>6} {'DP step ms/ex':>22} {'plain ms/ex':>22} {'DP/plain':>9} {'MFLOP/ex':>9} {'GFLOP/s':>8}")
    for r in result["rows"]:
        print(
            f"{r['batch']:>6} {r['dp_ms_per_example']:>8.2f} ({r['dp_ms_min']:.2f}-{r['dp_ms_max']:.2f}) "
            f"{r['plain_ms_per_example']:>8.2f} ({r['plain_ms_min']:.2f}-{r['plain_ms_max']:.2f}) "
            f"{r['dp_over_plain']:>9.2f} {r['flops_per_example'] / 1e6:>9.1f} {r['plain_gflops_per_s']:>8.1f}"
        )
    path = Path(args.out) / f"step_scaling-{args.task}-{args.profile}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
