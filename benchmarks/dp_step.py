"""Time one LoRA training step, private and not, side by side in one process (CPU or GPU).

Models (``--size``; built in ``step_models.py``):
  tiny   CPU correctness: a 2-stage timm Swin at 32 px (window 4) and a 2-layer RoBERTa, rank 4
  small  CPU timing: a 12M-parameter 3-stage Swin at 32 px and MiniLM-L6 (seq 64), rank 8
  paper  GPU timing: Swin-B at 224 px (timm ``swin_base_patch4_window7_224``, random init), LoRA r=16
         on attn.qkv/attn.proj; RoBERTa-base (config, random init) at sequence length 128, LoRA r=8
         on query/key/value. Timing needs no pretrained weights.

Variants (each on its own copy of the model, head trained at every step):
  non-private X     mean loss, autograd gradient of the active factors X in {B, A, AB}, SGD step
  dp X              our DP step (lalora_lite): per-example gradients, clipping, noise, SGD step
  opacus hooks AB   peft LoRA + opacus GradSampleModule + DPOptimizer
  opacus ghost AB   peft LoRA + opacus ghost clipping (two backward passes)
  naive loop AB     per-example gradients by a Python loop of batch-1 backward passes

Timing: variants are interleaved round-robin (the order rotates every repeat), so a slow phase
of a shared machine hits all of them; each ratio is taken within one repeat and the median
ratio and its quartiles are reported. GPU steps are timed with CUDA events after warm-up.
Memory: on CUDA, ``torch.cuda.max_memory_allocated`` of one step plus the variant's resident
tensors (model, optimizer); on CPU, ``--memory`` measures max RSS in one process per variant.
``--check`` compares our per-example norms and clipped sums with the naive loop's (fp32, eval mode).

Usage:
  python benchmarks/dp_step.py --size small                        (CPU, both models)
  python benchmarks/dp_step.py --size paper --device cuda --batches 16 32 64 --check
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # step_models, also when loaded by path (tests)

# step_models sets the offline environment and puts the repository root on the path for lalora_lite
from step_models import MODELS, SIZES, Spec, make_batch, ours, spec_for, with_peft  # noqa: E402

from lalora_lite.lora import set_active  # noqa: E402
from lalora_lite.per_example import per_example_gradients  # noqa: E402
from lalora_lite.privacy import clip_and_sum, noisy_gradient, per_example_norms  # noqa: E402
from lalora_lite.training import DPNoise, step_gradient, summed_loss  # noqa: E402

VARIANTS = (
    "non-private B",
    "dp B",
    "non-private A",
    "dp A",
    "non-private AB",
    "dp AB",
    "opacus hooks AB",
    "opacus ghost AB",
    "naive loop AB",
)


def sgd_apply(params: dict[str, torch.nn.Parameter]) -> Callable[[dict[str, torch.Tensor]], None]:
    opt = torch.optim.SGD(params.values(), lr=1e-3)

    def apply(grads: dict[str, torch.Tensor]) -> None:
        opt.zero_grad(set_to_none=True)
        for n, g in grads.items():
            params[n].grad = g
        opt.step()

    return apply


def make_step(spec: Spec, variant: str, batch: dict[str, torch.Tensor], device: torch.device) -> Callable[[], None]:
    """Build the variant's model and return a function that takes one training step."""
    b = batch["labels"].shape[0]
    generator = torch.Generator().manual_seed(2)  # CPU generator, as in lalora_lite's federated loop
    if variant.startswith("opacus"):
        from opacus import GradSampleModule
        from opacus.optimizers import DPOptimizer

        model = with_peft(spec, device)
        trainable = [p for p in model.parameters() if p.requires_grad]
        if variant == "opacus hooks AB":
            gsm = GradSampleModule(model)
            opt = DPOptimizer(
                torch.optim.SGD(trainable, lr=1e-3), noise_multiplier=1.0, max_grad_norm=1.0, expected_batch_size=b
            )

            def hooks() -> None:
                opt.zero_grad()
                (summed_loss(gsm, batch) / b).backward()
                opt.step()

            return hooks
        from opacus.grad_sample import GradSampleModuleFastGradientClipping
        from opacus.optimizers import DPOptimizerFastGradientClipping
        from opacus.utils.fast_gradient_clipping_utils import DPLossFastGradientClipping

        gsm = GradSampleModuleFastGradientClipping(model, max_grad_norm=1.0, use_ghost_clipping=True)
        opt = DPOptimizerFastGradientClipping(
            torch.optim.SGD(trainable, lr=1e-3), noise_multiplier=1.0, max_grad_norm=1.0, expected_batch_size=b
        )
        criterion = DPLossFastGradientClipping(gsm, opt, torch.nn.CrossEntropyLoss())

        def ghost() -> None:
            from lalora_lite.models import forward_logits

            opt.zero_grad()
            criterion(forward_logits(gsm, batch), batch["labels"]).backward()
            opt.step()

        return ghost

    model, params = ours(spec, device)
    apply = sgd_apply(params)
    factors = set(variant.rsplit(" ", 1)[1])
    dp = DPNoise(noise_multiplier=1.0, sample_rate=0.01, clip_norm=1.0, expected_batch_size=b)
    if variant.startswith("non-private") or variant.startswith("dp "):
        private = dp if variant.startswith("dp ") else None

        def step() -> None:
            active = set_active(params, factors)
            apply(step_gradient(model, params, active, batch, private, generator)[0])

        return step

    def naive() -> None:
        active = set_active(params, factors)
        apply(noisy_gradient(loop_per_example(model, params, active, batch), 1.0, 1.0, b, generator))

    return naive


def loop_per_example(model, params, active, batch) -> dict[str, torch.Tensor]:
    """The reference: one batch-1 forward and backward pass per example."""
    b = batch["labels"].shape[0]
    per: dict[str, list[torch.Tensor]] = {n: [] for n in active}
    for i in range(b):
        grads = torch.autograd.grad(
            summed_loss(model, {k: v[i : i + 1] for k, v in batch.items()}), [params[n] for n in active]
        )
        for n, g in zip(active, grads):
            per[n].append(g)
    return {n: torch.stack(gs) for n, gs in per.items()}


def check_exactness(model_name: str, size: str, batch_size: int, device: torch.device) -> dict:
    """Our per-example norms and clipped sums against the naive loop's (eval mode, fp32, factors AB + head)."""
    spec = spec_for(model_name, size)
    model, params = ours(spec, device)
    model.eval()
    for name, p in params.items():  # B starts at zero: give it values so that A's gradient is not zero
        if name.endswith("lora_B"):
            torch.nn.init.normal_(p, std=0.02)
    batch = make_batch(spec, batch_size, device)
    active = set_active(params, {"A", "B"})
    with torch.backends.cudnn.flags(allow_tf32=False):
        torch.backends.cuda.matmul.allow_tf32 = False
        vec = per_example_gradients(model, lambda: summed_loss(model, batch), batch_size)
        ref = loop_per_example(model, params, active, batch)
    norms_v, norms_r = per_example_norms(vec), per_example_norms(ref)
    clip = float(norms_r.median())  # half the examples are clipped
    sum_v, sum_r = clip_and_sum(vec, clip), clip_and_sum(ref, clip)
    sum_err = max(((sum_v[n] - sum_r[n]).norm() / sum_r[n].norm().clamp_min(1e-30)).item() for n in sum_r)
    return {
        "model": model_name,
        "size": size,
        "batch": batch_size,
        "device": str(device),
        "per_example_rows": {n: int(v.shape[0]) for n, v in list(vec.items())[:1]},
        "rows_equal_batch": all(v.shape[0] == batch_size for v in vec.values()),
        "max_rel_err_norms": ((norms_v - norms_r).abs() / norms_r).max().item(),
        "max_rel_err_clipped_sum": sum_err,
        "tensors": len(vec),
    }


def check_noise(device: torch.device) -> dict:
    """The DP noise on ``device``: its std against sigma*C/b (200k draws) and its reproducibility from a seed."""
    sigma, clip, b = 1.3, 0.7, 16.0
    zeros = {"w": torch.zeros(1, 400, 500, device=device)}
    draws = [noisy_gradient(zeros, clip, sigma, b, torch.Generator().manual_seed(s))["w"] for s in (0, 0, 1)]
    return {
        "device": str(device),
        "noise_device": str(draws[0].device),
        "std_over_expected": (draws[0].std() / (sigma * clip / b)).item(),
        "same_seed_equal": bool(torch.equal(draws[0], draws[1])),
        "other_seed_differs": not bool(torch.equal(draws[0], draws[2])),
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(step: Callable[[], None], device: torch.device) -> float:
    """Seconds of one step (CUDA events on a GPU, wall clock on a CPU)."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        step()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1000
    t0 = time.perf_counter()
    step()
    return time.perf_counter() - t0


def quartiles(xs: list[float]) -> tuple[float, float, float]:
    if len(xs) < 2:
        return xs[0], xs[0], xs[0]
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], statistics.median(xs), q[2]


def bench_model(
    model_name: str, size: str, batch_size: int, device: torch.device, variants: list[str], repeats: int, warmup: int
) -> list[dict]:
    """Build every variant, warm up (recording memory on CUDA), then time them interleaved."""
    spec = spec_for(model_name, size)
    batch = make_batch(spec, batch_size, device)
    steps, rows = {}, {}
    for v in variants:
        row = {"model": model_name, "size": size, "batch": batch_size, "variant": v}
        rows[v] = row
        try:
            _sync(device)
            before = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
            step = make_step(spec, v, batch, device)
            for _ in range(warmup):
                step()
            if device.type == "cuda":
                _sync(device)
                resident = torch.cuda.memory_allocated(device) - before
                torch.cuda.reset_peak_memory_stats(device)
                at_start = torch.cuda.memory_allocated(device)
                step()
                _sync(device)
                extra = torch.cuda.max_memory_allocated(device) - at_start
                row["peak_mb"] = round((resident + extra) / 2**20, 1)
                row["step_extra_mb"] = round(extra / 2**20, 1)
            steps[v] = step
        except Exception as err:  # noqa: BLE001 - report the failure (e.g. Opacus on Swin windows)
            row["error"] = f"{type(err).__name__}: {str(err)[:200]}"
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
    times: dict[str, list[float]] = {v: [] for v in steps}
    order = list(steps)
    for r in range(repeats):
        rotated = order[r % len(order) :] + order[: r % len(order)]
        for v in rotated:
            times[v].append(timed(steps[v], device))
    for v, ts in times.items():
        rows[v]["repeats"] = len(ts)
        rows[v]["p25_s"], rows[v]["median_s"], rows[v]["p75_s"] = quartiles(ts)
    # ratios within each repeat: DP X / non-private X (same factors); naive loop / this
    for v in times:
        factors = v.rsplit(" ", 1)[1]
        base = f"non-private {factors}"
        if base in times:
            ratios = [a / b for a, b in zip(times[v], times[base])]
            rows[v]["vs_nonprivate"] = dict(zip(("p25", "median", "p75"), quartiles(ratios)))
            if "peak_mb" in rows[v] and "peak_mb" in rows.get(base, {}):
                rows[v]["memory_vs_nonprivate"] = rows[v]["peak_mb"] / rows[base]["peak_mb"]
        if "naive loop AB" in times:
            speedups = [a / b for a, b in zip(times["naive loop AB"], times[v])]
            rows[v]["naive_over_this"] = dict(zip(("p25", "median", "p75"), quartiles(speedups)))
    del steps
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return [rows[v] for v in variants]


def profile_steps(model_name: str, size: str, batch_size: int, device: torch.device, variants: list[str]) -> str:
    """torch.profiler tables of three steps of each variant (where the time of a step goes)."""
    from torch.profiler import ProfilerActivity, profile

    spec = spec_for(model_name, size)
    batch = make_batch(spec, batch_size, device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    tables = []
    for v in variants:
        step = make_step(spec, v, batch, device)
        step()
        _sync(device)
        with profile(activities=activities) as prof:
            for _ in range(3):
                step()
            _sync(device)
        tables.append(
            f"## {model_name} batch {batch_size}: {v} (3 steps)\n"
            + prof.key_averages().table(sort_by=sort, row_limit=14, max_name_column_width=60)
        )
    return "\n".join(tables)


def cpu_peak_rss(model_name: str, size: str, batch_size: int, variant: str) -> float | None:
    """Max RSS (MB) of a fresh process that builds the variant and takes two steps."""
    proc = subprocess.run(
        [sys.executable, __file__, "--rss-one", model_name, size, str(batch_size), variant],
        capture_output=True,
        text=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else None


def _rss_one(model_name: str, size: str, batch_size: int, variant: str) -> None:
    device = torch.device("cpu")
    spec = spec_for(model_name, size)
    step = make_step(spec, variant, make_batch(spec, batch_size, device), device)
    step()
    step()
    print(json.dumps(round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)))


def _version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def environment(device: torch.device) -> dict:
    env = {
        "device": str(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "timm": _version("timm"),
        "transformers": _version("transformers"),
        "opacus": _version("opacus"),
        "peft": _version("peft"),
        "threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        env |= {
            "card": torch.cuda.get_device_name(device),
            "cuda": torch.version.cuda,
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
            "tf32_cudnn": torch.backends.cudnn.allow_tf32,
        }
    else:
        env["cpu"] = platform.processor() or platform.machine()
    return env


def _fmt(row: dict, key: str) -> str:
    value = row.get(key)
    if value is None:
        return ""
    return f"{value['median']:.2f}x ({value['p25']:.2f}-{value['p75']:.2f})"


def markdown(rows: list[dict]) -> str:
    lines = [
        "| model | batch | variant | median step (ms) | vs non-private, same factors (IQR) | "
        "naive loop / this (IQR) | peak memory (MB) | memory vs non-private |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['batch']} | {r['variant']} | fails: {r['error'][:120]} | | | | |")
            continue
        mem = f"{r['memory_vs_nonprivate']:.3f}x" if "memory_vs_nonprivate" in r else ""
        lines.append(
            f"| {r['model']} | {r['batch']} | {r['variant']} | {1000 * r['median_s']:.1f} | "
            f"{_fmt(r, 'vs_nonprivate')} | {_fmt(r, 'naive_over_this')} | {r.get('peak_mb', '')} | {mem} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--size", choices=SIZES, default="small")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--batches", nargs="+", type=int, default=[32])
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--repeats", type=int, default=20, help="timed steps per variant (interleaved)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--check", action="store_true", help="also compare per-example norms/sums with the loop")
    parser.add_argument("--memory", action="store_true", help="CPU only: max RSS, one process per variant")
    parser.add_argument(
        "--out", default=None, help="JSON path (default benchmarks/results/dp_step-<size>-<device>.json)"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="print torch.profiler tables of 'non-private AB' and 'dp AB' (first model, first batch)",
    )
    parser.add_argument("--rss-one", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_one:
        _rss_one(args.rss_one[0], args.rss_one[1], int(args.rss_one[2]), args.rss_one[3])
        return
    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: torch sees no CUDA GPU")
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 storage, TF32 matmuls: the same for every variant
        torch.backends.cudnn.allow_tf32 = True
    if any(b < 1 for b in args.batches) or args.repeats < 1 or args.warmup < 1:
        raise SystemExit("--batches, --repeats and --warmup must be >= 1")
    env = environment(device)
    print(json.dumps(env), file=sys.stderr)
    checks, rows = [], []
    if args.check:
        checks.append(check_noise(device))
        print(json.dumps(checks[-1]), file=sys.stderr)
        for m in args.models:
            checks.append(check_exactness(m, args.size, min(args.batches), device))
            print(json.dumps(checks[-1]), file=sys.stderr)
        if device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
    if args.profile:
        print(profile_steps(args.models[0], args.size, args.batches[0], device, ["non-private AB", "dp AB"]))
    out = Path(args.out or Path(__file__).parent / "results" / f"dp_step-{args.size}-{device.type}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for m in args.models:
        for b in args.batches:
            rows += bench_model(m, args.size, b, device, args.variants, args.repeats, args.warmup)
            print(markdown([r for r in rows if r["model"] == m and r["batch"] == b]), file=sys.stderr)
            if args.memory and device.type == "cpu":
                for r in rows[-len(args.variants) :]:
                    if "error" not in r:
                        r["peak_rss_mb"] = cpu_peak_rss(m, args.size, b, r["variant"])
            env["bench_wall_s"] = round(time.perf_counter() - started, 1)
            # written after every (model, batch): a run cut short keeps what it measured
            out.write_text(json.dumps({"env": env, "repeats": args.repeats, "checks": checks, "rows": rows}, indent=2))
    print(markdown(rows))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
