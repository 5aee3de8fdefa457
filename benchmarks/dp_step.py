"""Time one training step, private and not, on a small Swin and on MiniLM-L6 (CPU, batch 32).

Variants (all on the same LoRA model, rank 8, head trained), for each set of active
factors: B (LA-LoRA's B-steps, FFA-LoRA), A (LA-LoRA's A-steps) and AB (DP-LoRA):
  non-private X    mean loss, autograd gradient of the active tensors, SGD step
  dp X             our DP step: per-example gradients, clipping, noise, SGD step
  naive loop AB    per-example gradients by a Python loop of batch-1 backward passes
  opacus AB        peft LoRA + opacus GradSampleModule/DPOptimizer (hooks)

Each (model, variant) runs in its own subprocess so that its peak memory (max RSS) is its own.
Usage: python benchmarks/dp_step.py [--repeats 7] [--out benchmarks/results/dp_step.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

BATCH = 32
RANK = 8
MODELS = ("swin-small", "minilm")
VARIANTS = ("non-private B", "dp B", "non-private A", "dp A", "non-private AB", "dp AB", "naive loop AB", "opacus AB")


def make_batch(model_name: str, generator):
    import torch

    labels = torch.randint(0, 10, (BATCH,), generator=generator)
    if model_name == "swin-small":
        return {"pixel_values": torch.randn(BATCH, 3, 32, 32, generator=generator), "labels": labels}
    return {
        "input_ids": torch.randint(1000, 20000, (BATCH, 64), generator=generator),
        "attention_mask": torch.ones(BATCH, 64, dtype=torch.long),
        "labels": labels,
    }


def build(model_name: str, use_peft: bool):
    """The backbone with LoRA (ours, or peft's for the Opacus baseline)."""
    from lalora_lite.lora import inject_lora
    from lalora_lite.models import minilm, tiny_swin

    if model_name == "swin-small":  # about 12M parameters, 3 stages, window attention
        backbone = tiny_swin(10, in_chans=3, img_size=32, embed_dim=96, depths=(2, 2, 6), num_heads=(3, 6, 12))
    else:
        backbone = minilm(10)
    if use_peft:
        import peft

        targets = ["qkv", "proj"] if model_name == "swin-small" else ["query", "key", "value"]
        config = peft.LoraConfig(r=RANK, lora_alpha=2 * RANK, target_modules=targets, modules_to_save=list(backbone.head))
        return peft.get_peft_model(backbone.model, config), backbone
    inject_lora(backbone.model, backbone.targets, rank=RANK, alpha=2 * RANK, head=backbone.head)
    return backbone.model, backbone


def step_fn(model_name: str, variant: str):
    """Build the model and return a zero-argument function that takes one training step."""
    import torch

    from lalora_lite.lora import set_active, trainable_parameters
    from lalora_lite.privacy import noisy_gradient
    from lalora_lite.training import DPNoise, step_gradient, summed_loss

    generator = torch.Generator().manual_seed(0)
    batch = make_batch(model_name, generator)
    dp = DPNoise(noise_multiplier=1.0, sample_rate=0.01, clip_norm=1.0, expected_batch_size=BATCH)

    if variant == "opacus AB":
        from opacus import GradSampleModule
        from opacus.optimizers import DPOptimizer

        model, _ = build(model_name, use_peft=True)
        model.train()
        gsm = GradSampleModule(model)
        opt = DPOptimizer(torch.optim.SGD([p for p in gsm.parameters() if p.requires_grad], lr=0.01),
                          noise_multiplier=1.0, max_grad_norm=1.0, expected_batch_size=BATCH)

        def step() -> None:
            opt.zero_grad()
            summed_loss(gsm, batch).backward()  # opacus scales by 1/expected_batch_size itself
            opt.step()

        return step

    model, backbone = build(model_name, use_peft=False)
    model.train()
    params = trainable_parameters(model, backbone.head)
    opt = torch.optim.SGD(params.values(), lr=0.01)
    active = set_active(params, tuple(variant.rsplit(" ", 1)[1]))

    def apply(grads) -> None:
        opt.zero_grad(set_to_none=True)
        for n, g in grads.items():
            params[n].grad = g
        opt.step()

    if variant.startswith("non-private"):
        return lambda: apply(step_gradient(model, params, active, batch, None, generator)[0])
    if variant.startswith("dp "):
        return lambda: apply(step_gradient(model, params, active, batch, dp, generator)[0])
    if variant == "naive loop AB":

        def naive() -> None:
            per_example: dict[str, list] = {n: [] for n in active}
            for i in range(BATCH):
                one = {k: v[i : i + 1] for k, v in batch.items()}
                grads = torch.autograd.grad(summed_loss(model, one), [params[n] for n in active])
                for n, g in zip(active, grads):
                    per_example[n].append(g)
            stacked = {n: torch.stack(gs) for n, gs in per_example.items()}
            apply(noisy_gradient(stacked, dp.clip_norm, dp.noise_multiplier, dp.expected_batch_size, generator))

        return naive
    raise ValueError(f"unknown variant {variant!r}; allowed: {VARIANTS}")


def measure_one(model_name: str, variant: str, repeats: int) -> dict:
    """Median step time and peak RSS of one variant (runs inside its own process)."""
    import torch

    torch.manual_seed(0)
    try:
        step = step_fn(model_name, variant)
        baseline_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        step()  # warm-up
        times = []
        for _ in range(2 if variant.startswith("naive") else repeats):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
    except Exception as err:  # noqa: BLE001 - report the failure (e.g. Opacus on Swin windows)
        return {"model": model_name, "variant": variant, "error": f"{type(err).__name__}: {str(err)[:160]}"}
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "model": model_name, "variant": variant, "median_s": statistics.median(times), "runs": len(times),
        "peak_rss_mb": round(peak_mb), "step_extra_rss_mb": round(peak_mb - baseline_mb),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "dp_step.json"))
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_one(*args.one, args.repeats)))
        return

    import torch

    rows = []
    for model_name in args.models:
        for variant in VARIANTS:
            proc = subprocess.run([sys.executable, __file__, "--one", model_name, variant, "--repeats", str(args.repeats)],
                                  capture_output=True, text=True, check=True)
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(rows[-1], file=sys.stderr)
    base = {(r["model"], r["variant"].rsplit(" ", 1)[1]): r["median_s"] for r in rows
            if r["variant"].startswith("non-private")}
    naive = {r["model"]: r.get("median_s") for r in rows if r["variant"] == "naive loop AB"}
    print(f"\nbatch {BATCH}, LoRA rank {RANK}, CPU threads {torch.get_num_threads()}, torch {torch.__version__}\n")
    print("| model | variant | median step (s) | vs non-private (same factors) | naive loop / this | peak RSS (MB) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['model']} | {r['variant']} | fails: {r['error']} | | | |")
            continue
        r["vs_nonprivate"] = r["median_s"] / base[(r["model"], r["variant"].rsplit(" ", 1)[1])]
        r["naive_over_this"] = naive[r["model"]] / r["median_s"] if naive[r["model"]] else None
        print(f"| {r['model']} | {r['variant']} | {r['median_s']:.3f} | {r['vs_nonprivate']:.2f}x | "
              f"{r['naive_over_this']:.1f}x | {r['peak_rss_mb']} |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"batch": BATCH, "rank": RANK, "threads": torch.get_num_threads(), "torch": torch.__version__}
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
