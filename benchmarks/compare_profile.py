"""Where the time of ``lalora compare`` goes, and what a whole comparison costs, from short runs.

For one task and profile (one thread per run, as ``compare`` runs them):

1. *build*: building the task cold (first call in the process) and the cost of a cached build;
2. *setup*: calibrating every client's noise multiplier (per private run; cold lru-cache);
3. *train* and *eval*: ``--rounds`` rounds of every method, timed per round (evaluation on the
   test split every round, scaled per example to the search's validation split);
4. the projection of a cold ``lalora compare`` with ``--workers`` workers: search runs (every
   method's starting grid at every budget, no widening) and final runs (every method x budget x
   seed), each ``rounds x train + evaluations x eval``, plus the calibrations (once per seed and
   budget in every worker, at worst), divided by the workers (perfect scaling: an upper bound on
   the speed of the parallel run, see 5.);
5. ``--parallel``: the throughput of ``--workers`` worker processes against one, side by side:
   the same batch of short runs through ``Runner(workers=1)`` and ``Runner(workers=N)`` in turns,
   ``--repeats`` times (worker start-up included); the median ratio and its range.

Usage:
  python benchmarks/compare_profile.py --task fmnist-swin --profile cpu --rounds 3 --parallel
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from lalora_lite import accounting
from lalora_lite.federated import evaluation_count, make_ledgers, run_federated
from lalora_lite.methods import get_method
from lalora_lite.study.comparison import planned_runs
from lalora_lite.study.runs import RUN_THREADS, Runner, RunSpec, cached_task, federated_config, torch_threads
from lalora_lite.tasks import get_profile


def measure(task: str, profile_name: str, rounds: int) -> dict:
    profile = get_profile(task, profile_name)
    start = time.perf_counter()
    built = cached_task(task, profile_name, profile.seeds[0])
    build_cold = time.perf_counter() - start
    start = time.perf_counter()
    cached_task(task, profile_name, profile.seeds[0])
    build_cached = time.perf_counter() - start
    sizes = [len(c["labels"]) for c in built.clients]
    out = {"build_cold_s": build_cold, "build_cached_s": build_cached, "clients": sizes, "methods": {}}
    for method in profile.methods:
        private = get_method(method).private
        eps = max(profile.epsilons) if private else None
        spec = RunSpec(
            task,
            profile_name,
            method,
            eps,
            profile.seeds[0],
            profile.lr_grid[len(profile.lr_grid) // 2],
            profile.clip_grid[len(profile.clip_grid) // 2],
            profile.rounds,
            "test",
        )
        cfg = federated_config(spec, profile)
        setup = 0.0
        if private:
            accounting.calibrate_noise_multiplier.cache_clear()
            accounting._rdp_of_one_step.cache_clear()
            start = time.perf_counter()
            make_ledgers(cfg, sizes)
            setup = time.perf_counter() - start
        short = dataclasses.replace(cfg, rounds=rounds, eval_every=1)
        backbone = copy.deepcopy(built.backbone)
        history = run_federated(backbone, built.clients, built.test, short, progress=False)
        out["methods"][method] = {
            "setup_s": setup,
            "train_s_per_round": float(history["train_s"].median()),
            "eval_s": float(history["eval_s"].median()),
            "eval_examples": len(built.test["labels"]),
        }
    return out


def project(measured: dict, task: str, profile_name: str, workers: int) -> dict:
    """Seconds of a cold comparison (no widening) from the measured per-run phases."""
    profile = get_profile(task, profile_name)
    search_evaluations = evaluation_count(profile.search_rounds, profile.eval_every)
    evaluations = evaluation_count(profile.rounds, profile.eval_every)
    search_s = final_s = 0.0
    search_runs = final_runs = 0
    for method, m in measured["methods"].items():
        searches, finals = planned_runs(profile, method)
        per_example = m["eval_s"] / m["eval_examples"]
        run_search = (
            profile.search_rounds * m["train_s_per_round"] + search_evaluations * per_example * profile.val_size
        )
        run_final = profile.rounds * m["train_s_per_round"] + evaluations * m["eval_s"]
        search_runs += searches
        final_runs += finals
        search_s += searches * run_search
        final_s += finals * run_final
    # calibration depends on (epsilon, client sizes = seed) only, and is cached in each worker:
    # at worst every worker calibrates every (seed, epsilon) once
    setup = max(m["setup_s"] for m in measured["methods"].values())
    setup_s = setup * len(profile.epsilons) * len(profile.seeds) * workers
    return {
        "search_runs": search_runs,
        "final_runs": final_runs,
        "search_worker_s": search_s,
        "final_worker_s": final_s,
        "setup_worker_s": setup_s,
        "workers": workers,
        "projected_wall_min": (search_s + final_s + setup_s) / workers / 60,
    }


def parallel_ratio(task: str, profile_name: str, workers: int, repeats: int) -> dict:
    """Wall time of the same short runs through 1 worker and through ``workers``, in turns."""
    profile = get_profile(task, profile_name)
    specs = [
        RunSpec(
            task,
            profile_name,
            "lalora",
            max(profile.epsilons),
            seed,
            profile.lr_grid[0],
            profile.clip_grid[0],
            2,
            "test",
        )
        for seed in profile.seeds[: 2 * workers]
    ]
    ratios, times = [], []
    for r in range(repeats):
        walls = {}
        for n in (1, workers) if r % 2 == 0 else (workers, 1):
            with tempfile.TemporaryDirectory() as tmp, Runner(Path(tmp), n, progress=False) as runner:
                start = time.perf_counter()
                runner.run(specs)
                walls[n] = time.perf_counter() - start
        ratios.append(walls[1] / walls[workers])
        times.append(walls)
    return {
        "runs_per_batch": len(specs),
        "walls_s": times,
        "speedup_median": statistics.median(ratios),
        "speedup_min": min(ratios),
        "speedup_max": max(ratios),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="fmnist-swin")
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--rounds", type=int, default=3, help="rounds timed per method")
    parser.add_argument("--from-json", help="recompute the projection from a stored result instead of measuring")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--parallel", action="store_true", help="also measure 1 vs --workers processes")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    if args.from_json:
        measured = json.loads(Path(args.from_json).read_text())["measured"]
    else:
        with torch_threads(RUN_THREADS):
            measured = measure(args.task, args.profile, args.rounds)
    result = {
        "task": args.task,
        "profile": args.profile,
        "threads_per_run": RUN_THREADS,
        "measured": measured,
        "projection": project(measured, args.task, args.profile, args.workers),
        "cpu": torch.backends.cpu.get_cpu_capability(),
    }
    if args.parallel:
        result["parallel"] = parallel_ratio(args.task, args.profile, args.workers, args.repeats)
    print(f"build: cold {measured['build_cold_s']:.2f} s, cached {measured['build_cached_s']:.4f} s")
    print(f"{'method':<16} {'setup s':>8} {'train s/round':>14} {'eval s':>8}")
    for method, m in measured["methods"].items():
        print(f"{method:<16} {m['setup_s']:>8.2f} {m['train_s_per_round']:>14.2f} {m['eval_s']:>8.2f}")
    p = result["projection"]
    print(
        f"projection ({p['workers']} workers, no widening): {p['search_runs']} search runs "
        f"{p['search_worker_s'] / 60:.1f} worker-min, {p['final_runs']} final runs {p['final_worker_s'] / 60:.1f} "
        f"worker-min, calibration {p['setup_worker_s'] / 60:.1f} worker-min -> {p['projected_wall_min']:.1f} min wall"
    )
    if args.parallel:
        q = result["parallel"]
        print(
            f"{args.workers} workers vs 1: speed-up {q['speedup_median']:.2f} (range {q['speedup_min']:.2f}-"
            f"{q['speedup_max']:.2f}, {args.repeats} repeats of {q['runs_per_batch']} runs)"
        )
    path = Path(args.out) / f"compare_profile-{args.task}-{args.profile}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
