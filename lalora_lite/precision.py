"""Mixed precision that keeps DP-SGD's guarantee.

Only the *forward* pass runs in low precision (``torch.autocast``); everything the privacy
argument rests on stays in float32:

* the LoRA factors and the head are float32 masters (autocast casts copies for the matmuls),
* each example's gradient is contracted in float32 from the low-precision activation
  gradients (:mod:`lalora_lite.per_example` casts before the contraction),
* clipping, the Gaussian noise and the optimizer step are float32.

``bf16`` has float32's exponent range and needs no loss scaling. ``fp16`` (what a T4 runs fast)
does: the summed loss is multiplied by :data:`FP16_LOSS_SCALE` before the backward pass and every
per-example gradient is divided by it in float32. A fixed scale, not a dynamic scaler: a dynamic
scaler skips a whole step when *any* example overflows, a data-dependent decision outside the
mechanism. Here an example whose gradient is not finite (overflow) gets a zero gradient instead.
That is a function of that example alone, applied before clipping, so each example's contribution
still has norm <= C and the sensitivity (hence epsilon) is unchanged; the count is reported.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch

PRECISIONS = ("fp32", "bf16", "fp16")
FP16_LOSS_SCALE = 2.0**10
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; allowed: {', '.join(PRECISIONS)}")


def forward_precision(precision: str, device: torch.device) -> AbstractContextManager:
    """The context a forward pass runs in: autocast to bf16/fp16, or nothing for fp32."""
    check_precision(precision)
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=_DTYPES[precision])


def loss_scale(precision: str) -> float:
    """What the summed loss is multiplied by before the backward pass (1 unless fp16)."""
    return FP16_LOSS_SCALE if precision == "fp16" else 1.0


def unscale_per_example(grads: dict[str, torch.Tensor], scale: float) -> tuple[dict[str, torch.Tensor], int]:
    """Per-example gradients ``name -> (b, *shape)`` in float32 divided by ``scale``; an example with
    any non-finite entry (in any tensor) gets zeros in every tensor. Returns the gradients and the
    number of examples zeroed."""
    grads = {n: g.float() / scale for n, g in grads.items()}
    if not grads:
        return grads, 0
    finite = torch.stack([g.flatten(1).isfinite().all(1) for g in grads.values()]).all(0)  # (b,)
    dropped = int((~finite).sum())
    if dropped:
        grads = {n: torch.where(finite.view(-1, *[1] * (g.dim() - 1)), g, 0.0) for n, g in grads.items()}
    return grads, dropped
