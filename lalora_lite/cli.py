"""The ``lalora`` command line.

``lalora compare``     the main job: all methods x budgets x seeds on a task, tables and figures.
``lalora explain``     the explanation study: five experiments on why the paper's margins do not appear.
``lalora run``         one federated run.
``lalora figures``     redraw every figure and table from stored results (no training).
``lalora pretrain``    build (and cache) the stand-in backbone and report its transfer quality.
``lalora accountant``  noise multiplier for a privacy budget (RDP and PRV).
``lalora estimate``    time and memory of a paper task's comparison on a T4 or an H100, before running it.
``lalora audit``       empirical privacy audit: epsilon lower bounds for our DP step and the authors'.

The profile (smoke | cpu | paper) comes from --profile, else $LALORA_PROFILE, else cpu.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from .accounting import calibrate_noise_multiplier, epsilon_for
from .methods import METHODS
from .tasks.profiles import PROFILES, current_profile


def cmd_accountant(args: argparse.Namespace) -> None:
    print(f"epsilon={args.epsilon} delta={args.delta} q={args.sample_rate} steps={args.steps}")
    for kind in ("rdp", "prv"):
        sigma = calibrate_noise_multiplier(args.epsilon, args.delta, args.sample_rate, args.steps, kind)
        spent = epsilon_for(sigma, args.sample_rate, args.steps, args.delta, kind)
        print(f"{kind.upper():>4}: noise multiplier sigma = {sigma:.4f}  (epsilon at that sigma: {spent:.4f})")


def cmd_estimate(args: argparse.Namespace) -> None:
    from .study.estimate import DEVICES, estimate

    profile_name = current_profile(args.profile)
    print(
        "| task | profile | device | GFLOP/example (fwd) | s per round | min per run | runs | h per method and budget "
        "| h for the comparison | GB per DP step |\n|---|---|---|---|---|---|---|---|---|---|"
    )
    for device in args.devices or DEVICES:
        e = estimate(args.task, profile_name, device)
        print(
            f"| {args.task} | {profile_name} | {device} | {e['forward_gflop_per_example']:.1f} | "
            f"{e['train_s_per_round']:.2f} | {e['run_min']:.1f} | {e['runs']} | "
            f"{e['hours_per_method_and_budget']:.2f} | "
            f"{e['compare_hours']:.1f} | {e['step_memory_gb']:.1f} |"
        )


def cmd_run(args: argparse.Namespace) -> None:
    from .study.runs import RunSpec, execute
    from .tasks import get_profile

    profile_name = current_profile(args.profile)
    profile = get_profile(args.task, profile_name)
    spec = RunSpec(
        args.task,
        profile_name,
        args.method,
        args.epsilon,
        args.seed,
        args.lr if args.lr is not None else profile.lr_grid[0],
        args.clip_norm if args.clip_norm is not None else profile.clip_grid[0],
        args.rounds or profile.rounds,
        "test",
    )
    history = execute(spec, Path(args.runs), device=args.device)
    last = history.iloc[-1]
    print(
        f"{args.task} [{profile_name}] {args.method}: test accuracy {last['accuracy']:.4f} after "
        f"{int(last['round'])} rounds, epsilon spent {last['epsilon_spent']:.3f}"
    )


def cmd_compare(args: argparse.Namespace) -> None:
    if args.quick:
        return cmd_quick(args)
    from .study.comparison import compare
    from .study.plotting import redraw
    from .study.stats import run_table, summary
    from .study.tables import summary_markdown
    from .tasks import get_task

    profile_name = current_profile(args.profile)
    if get_task(args.task).source:  # a paper task: say what it will cost before it starts
        from .study.estimate import device_kinds, estimate_line

        for kind in device_kinds(args.device):
            print(f"{args.task} [{profile_name}] {estimate_line(args.task, profile_name, kind)}", flush=True)
    history = compare(
        args.task,
        profile_name,
        tuple(args.methods) if args.methods else None,
        tuple(args.epsilons) if args.epsilons else None,
        tuple(args.seeds) if args.seeds else None,
        Path(args.runs),
        Path(args.results),
        device=args.device,
        workers=args.workers,
        tune_on=args.tune_on,
    )
    print(summary_markdown(summary(run_table(history))))
    for path in redraw(Path(args.results), Path(args.figures)):
        print(f"wrote {path}")


def cmd_quick(args: argparse.Namespace) -> None:
    import pandas as pd

    from .study.quick import QUICK_EPSILONS, QUICK_METHODS, QUICK_SEEDS, quick
    from .study.stats import paired_differences, run_table, summary
    from .study.tables import paired_markdown, summary_markdown

    if args.device != "cpu" or args.tune_on != "private":
        raise ValueError("--quick re-runs the committed cpu runs bit for bit: it takes no --device or --tune-on")
    reruns, written = quick(
        args.task,
        current_profile(args.profile),
        tuple(args.methods or QUICK_METHODS),
        tuple(args.epsilons or QUICK_EPSILONS),
        tuple(args.seeds or QUICK_SEEDS),
        Path(args.runs),
        Path(args.results),
        args.workers,
    )
    runs = run_table(pd.concat([r.history for r in reruns], ignore_index=True))
    print(summary_markdown(summary(runs)))
    if not (paired := paired_differences(runs)).empty:
        print("\n" + paired_markdown(paired))
    for path in written:
        print(f"wrote {path}")
    same = sum(not r.differing for r in reruns)
    if same < len(reruns):
        same_accuracy = sum(r.same_accuracy for r in reruns if r.differing)
        inside = sum(r.agrees for r in reruns if r.differing)
        print(
            f"{len(reruns) - same} re-runs are not bit-identical: this CPU is not the kind that made the comparison "
            f"(docs/comparison.md). {same_accuracy} of them reach the same accuracy at every evaluation, and "
            f"{inside} of them end inside the committed runs' 95 % prediction interval"
        )
    print(f"{same} of {len(reruns)} re-runs bit-identical to the committed comparison")
    if not all(r.agrees for r in reruns):
        raise SystemExit(1)


def cmd_explain(args: argparse.Namespace) -> None:
    import pandas as pd

    from .study.explain import Study, check_experiments, planned, run_study, shape_of
    from .study.explain_report import write_report
    from .study.runs import Runner, default_workers, measured_eta
    from .tasks import get_profile

    profile_name = current_profile(args.profile, allowed=("smoke", "cpu"))
    get_profile(args.task, profile_name)  # an unknown task or profile fails here, before any work
    experiments = tuple(args.experiments or shape_of(args.task, profile_name).experiments)
    check_experiments(experiments)
    chosen_path = Path(args.results) / args.task / profile_name / "chosen.csv"
    chosen = pd.read_csv(chosen_path) if chosen_path.exists() else None
    workers = args.workers or default_workers()
    out = Path(args.results) / "explain" / args.task / profile_name
    with Runner(Path(args.runs), workers, args.device) as runner:
        study = Study(args.task, profile_name, runner, chosen)
        first = planned(study, experiments)
        eta = measured_eta(chosen_path.parent, first, 0, workers)
        print(f"explain {args.task} [{profile_name}]: {first} runs before the curves extend; {eta or 'no estimate'}")
        run_study(study, experiments, out)
    for path in write_report(out, Path(args.figures)):
        print(f"wrote {path}")


def cmd_figures(args: argparse.Namespace) -> None:
    from .study.explain_report import write_report
    from .study.plotting import redraw

    written = redraw(Path(args.results), Path(args.figures))
    for folder in sorted(Path(args.results).glob("explain/*/*/")):  # the explanation study's report and figures
        written += write_report(folder, Path(args.figures))
    if not written:
        raise ValueError(f"no results found under {args.results}/<task>/<profile>/history.csv; run 'lalora compare'")
    for path in written:
        print(f"wrote {path}")


def cmd_pretrain(args: argparse.Namespace) -> None:
    from .study.transfer import transfer_report

    report = transfer_report(args.task, current_profile(args.profile), Path(args.results))
    for key, value in report.items():
        print(f"{key}: {value}")


def cmd_audit(args: argparse.Namespace) -> None:
    from .diagnostics.audit_run import run_audit

    profile = current_profile(args.profile)
    tables = run_audit(profile, Path(args.results), Path(args.figures), args.seed)
    bounds = ["mechanism", "claimed_epsilon", "epsilon_lb_cp", "epsilon_lb_gdp", "mu_estimate", "claimed_mu", "trials"]
    columns = {
        "step_audit": bounds,
        "local_update_audit": bounds,
        "one_run_audit": ["mechanism", "claimed_epsilon", "canaries", "guesses", "correct", "epsilon_lb"],
    }
    for name, table in tables.items():
        print(f"\n{name} ({profile}):\n{table[columns[name]].round(3).to_string(index=False)}")
    print(f"\nwrote {Path(args.results) / 'audit' / profile}/*.csv and {Path(args.figures) / f'audit-{profile}.png'}")


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

    est = sub.add_parser("estimate", help="time and memory of a paper task's comparison (T4, H100), before running it")
    est.add_argument("--task", required=True, help="a paper task, e.g. cifar100-swin-t, sst2-roberta")
    est.add_argument("--profile", choices=PROFILES, help="colab or paper; default: $LALORA_PROFILE or cpu")
    est.add_argument("--devices", nargs="+", choices=("t4", "h100"), help="default: both")
    est.set_defaults(func=cmd_estimate)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--task", required=True, help="e.g. fmnist-swin, wordnet-minilm, cifar100-swin-b")
        p.add_argument("--profile", choices=PROFILES, help="default: $LALORA_PROFILE or cpu")
        p.add_argument("--runs", default="runs", help="per-run checkpoints and histories (resumable)")
        p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (the model's device; default cpu)")

    def outputs(p: argparse.ArgumentParser, figures: bool = True) -> None:
        p.add_argument("--results", default="results", help="folder of the tables (default: results)")
        if figures:
            p.add_argument("--figures", default="figures", help="folder of the figures (default: figures)")

    run = sub.add_parser("run", help="one federated run on a task")
    common(run)
    run.add_argument("--method", required=True, type=_method_name)
    run.add_argument("--epsilon", type=float, help="privacy budget (leave out for fedlora)")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--lr", type=float, help="default: the first of the profile's grid")
    run.add_argument("--clip-norm", type=float, help="default: the first of the profile's grid")
    run.add_argument("--rounds", type=int, help="default: the profile's")
    run.set_defaults(func=cmd_run)

    cmp = sub.add_parser("compare", help="all methods x budgets x seeds, with a shared hyper-parameter search")
    common(cmp)
    cmp.add_argument("--methods", nargs="+", type=_method_name, help="default: the profile's")
    cmp.add_argument("--epsilons", nargs="+", type=float, help="default: the profile's")
    cmp.add_argument("--seeds", nargs="+", type=int, help="default: the profile's")
    cmp.add_argument("--workers", type=int, help="parallel run processes (default: one per core; 1 on a GPU)")
    cmp.add_argument(
        "--tune-on",
        choices=("private", "public"),
        default="private",
        help="search on the private validation split (default) or on the task's public data (no privacy "
        "cost; results in <profile>+public-tuning)",
    )
    cmp.add_argument(
        "--quick",
        action="store_true",
        help="no search: re-run the paper's methods at eps=3 and FedLoRA, seeds 0-2, with the stored "
        "comparison's chosen settings, and check each run bit for bit against it (minutes)",
    )
    outputs(cmp)
    cmp.set_defaults(func=cmd_compare)

    exp = sub.add_parser("explain", help="the explanation study (H1-H5): why the paper's margins do not appear here")
    common(exp)
    exp.add_argument(
        "--experiments", nargs="+", help="default: the task's (all five; the text stand-in: head-control, budget)"
    )
    exp.add_argument("--workers", type=int, help="parallel run processes (default: one per core)")
    outputs(exp)
    exp.set_defaults(func=cmd_explain)

    fig = sub.add_parser("figures", help="redraw all figures and tables from results/ (no training)")
    outputs(fig)
    fig.set_defaults(func=cmd_figures)

    aud = sub.add_parser("audit", help="empirical privacy audit (canary attack -> epsilon lower bounds)")
    aud.add_argument(
        "--profile", choices=PROFILES, help="smoke (seconds) or cpu (minutes); default: $LALORA_PROFILE or cpu"
    )
    aud.add_argument("--seed", type=int, default=0)
    outputs(aud)
    aud.set_defaults(func=cmd_audit)

    pre = sub.add_parser(
        "pretrain",
        help="build the cached stand-in backbone and report transfer quality "
        "(non-private, centralised: fresh head, head only, LoRA + head)",
    )
    pre.add_argument(
        "--task",
        default="fmnist-swin",
        choices=["fmnist-swin", "wordnet-minilm"],
        help="fmnist-swin pretrains its Swin first (cached); wordnet-minilm uses pretrained MiniLM",
    )
    pre.add_argument("--profile", choices=PROFILES)
    outputs(pre, figures=False)
    pre.set_defaults(func=cmd_pretrain)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import matplotlib

    matplotlib.use("Agg")  # the command line only writes files; notebooks keep their inline backend
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except ValueError as err:
        print(f"lalora: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
