"""How the cpu stand-ins were shaped: one federated run per setting, and the label skew of a round.

``run``: one run of ``--method`` on a task's validation split (``--seed``: the client split, default 0;
one thread), with the given
rounds, local steps, learning rate, clip norm and schedule, noise calibrated for the expected steps;
prints the accuracy at every evaluation (every ``--eval-every`` rounds). ``--set field=value``
replaces a field of the task's cpu profile first (data sizes, batch size, optimizer, rank, ...).

``skew``: how far a round's label mix is from the uniform one when ``m`` of ``N`` Dirichlet-split
clients are averaged with equal weights (mean total-variation distance over 5 splits x 50 rounds),
for the paper's CIFAR-100 shape and for the stand-ins.

Usage (the README quotes these):
  python benchmarks/stand_in_regime.py run --method fedlora --lr 0.4 --seed 1   # the cpu shape, 80 rounds x 5 steps
  python benchmarks/stand_in_regime.py run --method fedlora --rounds 40 --steps 10 --lr 0.4 --eval-every 5 --seed 1
  python benchmarks/stand_in_regime.py run --task wordnet-minilm --method lalora --epsilon 3 --rounds 30 \
      --lr 0.3 --eval-every 5
  python benchmarks/stand_in_regime.py run --task wordnet-minilm --method lalora --epsilon 3 --set frozen_layers=0
  python benchmarks/stand_in_regime.py skew
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import time

import numpy as np
import torch

from lalora_lite.data import dirichlet_partition
from lalora_lite.federated import FederatedConfig, run_federated
from lalora_lite.sampling import sample_clients
from lalora_lite.tasks import get_profile, get_task
from lalora_lite.tasks.profiles import Profile
from lalora_lite.training import LocalConfig


def with_settings(profile: Profile, settings: list[str]) -> Profile:
    """``profile`` with ``field=value`` items applied (values as Python literals, e.g. ``rank=4``)."""
    fields = {f.name for f in dataclasses.fields(Profile)}
    changes = {}
    for item in settings:
        name, sep, value = item.partition("=")
        if not sep or name not in fields:
            raise SystemExit(f"--set {item!r}: expected field=value with field one of {', '.join(sorted(fields))}")
        changes[name] = ast.literal_eval(value) if value[:1] in "0123456789-.([{" else value
    return dataclasses.replace(profile, **changes)


def run(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    profile = with_settings(get_profile(args.task, "cpu"), args.set)
    spec = get_task(args.task)
    task = spec.builder(spec, profile, args.seed)
    rounds, steps = args.rounds or profile.rounds, args.steps or profile.local_steps
    eval_every = args.eval_every or profile.eval_every
    local = LocalConfig(
        local_steps=steps, batch_size=profile.batch_size, lr=args.lr, clip_norm=args.clip, optimizer=profile.optimizer
    )
    cfg = FederatedConfig(
        args.method,
        rounds=rounds,
        clients_per_round=profile.clients_per_round,
        local=local,
        epsilon=args.epsilon,
        count_steps="expected",
        lr_schedule=args.schedule,
        eval_every=eval_every,
        seed=args.seed,
    )
    start = time.perf_counter()
    history = run_federated(task.backbone, task.clients, task.val, cfg, progress=False).dropna(subset=["accuracy"])
    print(
        f"{args.task} {' '.join(args.set)} {args.method} eps={args.epsilon} rounds={rounds} steps={steps} "
        f"lr={args.lr} clip={args.clip} {args.schedule} seed={args.seed}: {time.perf_counter() - start:.0f} s"
    )
    print("validation accuracy by round:", {int(r): round(a, 3) for r, a in zip(history["round"], history["accuracy"])})


def round_skew(classes: int, per_class: int, alpha: float, clients: int, per_round: int, min_size: int) -> float:
    labels = np.repeat(np.arange(classes), per_class)
    distances = []
    for seed in range(5):
        parts = dirichlet_partition(labels, clients, alpha, seed, min_size=min_size)
        counts = np.stack([np.bincount(labels[p], minlength=classes) for p in parts])
        mix = counts / counts.sum(1, keepdims=True)
        for t in range(50):
            chosen = sample_clients(seed, t, clients, per_round)
            distances.append(0.5 * np.abs(mix[chosen].mean(0) - 1 / classes).sum())
    return float(np.mean(distances))


def skew(_: argparse.Namespace) -> None:
    rows = [("CIFAR-100 (paper), Dirichlet 0.1, 4 of 8", (100, 450, 0.1, 8, 4, 20))]
    rows += [(f"fmnist-swin 5 classes, Dirichlet {a}, 4 of 8", (5, 1600, a, 8, 4, 100)) for a in (0.1, 0.3, 1.0)]
    rows += [("wordnet-minilm 8 classes, Dirichlet 0.8, 4 of 20", (8, 2500, 0.8, 20, 4, 50))]
    for name, setting in rows:
        print(f"{name:<50} mean TV distance of a round's label mix from uniform: {round_skew(*setting):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    one = sub.add_parser("run")
    one.add_argument("--task", default="fmnist-swin")
    one.add_argument("--method", default="fedlora")
    one.add_argument("--epsilon", type=float)
    one.add_argument("--rounds", type=int, help="default: the cpu profile's")
    one.add_argument("--steps", type=int, help="local steps per round; default: the cpu profile's")
    one.add_argument("--lr", type=float, default=0.3)
    one.add_argument("--clip", type=float, default=1.0)
    one.add_argument("--schedule", default="cosine", choices=["constant", "cosine"])
    one.add_argument("--eval-every", type=int, help="default: the cpu profile's")
    one.add_argument("--seed", type=int, default=0, help="the client split and the run's randomness")
    one.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="replace a field of the cpu profile (repeatable)",
    )
    one.set_defaults(func=run)
    sub.add_parser("skew").set_defaults(func=skew)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
