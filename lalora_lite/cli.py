"""The ``lalora`` command line.

``lalora accountant``  noise multiplier for a privacy budget (RDP and PRV).
``lalora demo``        a small end-to-end DP federated LoRA comparison (offline, CPU, ~1 min).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .accounting import calibrate_noise_multiplier, epsilon_for
from .methods import METHODS


def cmd_accountant(args: argparse.Namespace) -> None:
    print(f"epsilon={args.epsilon} delta={args.delta} q={args.sample_rate} steps={args.steps}")
    for kind in ("rdp", "prv"):
        sigma = calibrate_noise_multiplier(args.epsilon, args.delta, args.sample_rate, args.steps, kind)
        spent = epsilon_for(sigma, args.sample_rate, args.steps, args.delta, kind)
        print(f"{kind.upper():>4}: noise multiplier sigma = {sigma:.4f}  (epsilon at that sigma: {spent:.4f})")


def cmd_demo(args: argparse.Namespace) -> None:
    from .federated import FederatedConfig, run_federated
    from .tasks import digits_swin
    from .training import LocalConfig

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    local = LocalConfig(local_steps=args.local_steps, batch_size=16, lr=args.lr, clip_norm=args.clip_norm)
    finals = []
    for name in args.methods:
        task = digits_swin(seed=args.seed)
        cfg = FederatedConfig(
            method=name, rounds=args.rounds, clients_per_round=2, local=local,
            epsilon=None if not METHODS[name].private else args.epsilon, seed=args.seed,
        )
        history = run_federated(task.backbone, task.clients, task.test, cfg, checkpoint=out / f"{name}.pt")
        history.to_csv(out / f"{name}.csv", index=False)
        finals.append(history.iloc[-1])
    print(f"\ndigits-swin (tiny Swin on sklearn digits, a demo stand-in), {args.rounds} rounds, seed {args.seed}")
    print(f"{'method':<18}{'accuracy':>10}{'epsilon':>10}")
    for row in finals:
        print(f"{row['method']:<18}{row['accuracy']:>10.3f}{row['epsilon_spent']:>10.2f}")


def _method_name(name: str) -> str:
    if name not in METHODS:
        raise argparse.ArgumentTypeError(f"unknown method {name!r}; allowed: {', '.join(METHODS)}")
    return name


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lalora", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    acc = sub.add_parser("accountant", help="noise multiplier for a target (epsilon, delta)")
    acc.add_argument("--epsilon", type=float, required=True)
    acc.add_argument("--delta", type=float, default=1e-5)
    acc.add_argument("--sample-rate", type=float, required=True, help="Poisson sampling rate q = batch / n")
    acc.add_argument("--steps", type=int, required=True, help="noisy steps one client takes")
    acc.set_defaults(func=cmd_accountant)

    demo = sub.add_parser("demo", help="small offline DP federated LoRA comparison on sklearn digits")
    demo.add_argument("--methods", nargs="+", type=_method_name, default=["fedlora", "dp-lora", "ffa-lora", "rolora", "lalora"])
    demo.add_argument("--epsilon", type=float, default=3.0)
    demo.add_argument("--rounds", type=int, default=8)
    demo.add_argument("--local-steps", type=int, default=10)
    demo.add_argument("--lr", type=float, default=0.1)
    demo.add_argument("--clip-norm", type=float, default=1.0)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--out", default="runs/demo", help="folder for checkpoints and per-round CSVs")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except ValueError as err:
        print(f"lalora: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
