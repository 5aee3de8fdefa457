"""How much a search score depends on the client split it is measured on.

``lalora compare`` scores every setting on the validation split of one seed (``profile.seeds[0]``).
This runs one method's settings on the validation split of several seeds, each seed its own
Dirichlet split of the private pool into clients, and prints the search's score (mean accuracy of the
last two evaluations, ``search.score``) per setting and seed, with the mean over seeds: a setting
chosen on one split may be fragile on the others. The runs are the comparison's own search runs
(``experiments.search_spec``) with another seed, so those already in ``runs/`` are read back, not recomputed.

Usage (the README quotes this; 20 runs, about 9 min on 2 cores):
  python benchmarks/search_splits.py --task fmnist-swin --method fedlora --lrs 0.1 0.2 0.4 0.8
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from lalora_lite.methods import get_method
from lalora_lite.study.comparison import search_clips, search_spec
from lalora_lite.study.runs import Runner, default_workers
from lalora_lite.study.search import score
from lalora_lite.tasks import get_profile


def main(argv: list[str] | None = None) -> pd.DataFrame:
    """Runs (or reads back) the runs, prints the table, writes the scores; returns them (one row per run)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="fmnist-swin")
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--method", default="fedlora")
    parser.add_argument("--epsilon", type=float, default=None, help="the budget (required for a DP method)")
    parser.add_argument("--lrs", type=float, nargs="+", default=None, help="default: the profile's lr grid")
    parser.add_argument("--clips", type=float, nargs="+", default=None, help="default: the profile's clip grid")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default: the profile's seeds")
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--runs", default="runs")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    profile = get_profile(args.task, args.profile)
    private = get_method(args.method).private
    if private and args.epsilon is None:
        parser.error(f"--epsilon is required for the DP method {args.method!r}")
    if not private and args.epsilon is not None:
        parser.error(f"--epsilon {args.epsilon} given for the non-private method {args.method!r}")
    lrs = args.lrs or profile.lr_grid
    clips = args.clips or search_clips(profile, args.method)
    seeds = args.seeds or profile.seeds
    specs = [
        search_spec(args.task, args.profile, profile, args.method, args.epsilon, seed, lr, clip)
        for lr in lrs
        for clip in clips
        for seed in seeds
    ]
    with Runner(Path(args.runs), args.workers) as runner:
        histories = runner.run(specs, "runs")
    scores = pd.DataFrame(
        [
            {"lr": s.lr, "clip_norm": s.clip_norm, "seed": s.seed, "score": 100 * score(h)}
            for s, h in zip(specs, histories)
        ]
    )
    table = scores.pivot_table(index=["lr", "clip_norm"], columns="seed", values="score")
    table["mean"] = table.mean(axis=1)
    eps = "nodp" if args.epsilon is None else f"eps{args.epsilon:g}"
    out = Path(args.out) / f"search_splits-{args.task}-{args.profile}-{args.method}-{eps}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    scores.to_csv(out, index=False)
    print(f"{args.task} {args.profile} {args.method} {eps}: search score (%) on each seed's validation split")
    print(table.round(1).to_string())
    print(f"wrote {out}")
    return scores


if __name__ == "__main__":
    main()
