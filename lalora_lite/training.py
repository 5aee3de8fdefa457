"""One client's local update: the single loop that every method runs.

At local step ``k`` of round ``t`` a client

1. activates the factors ``method.active(t, k)`` (plus the head),
2. draws a Poisson batch,
3. computes the gradient of the active parameters: the DP-SGD noisy gradient
   (per-example, clipped, noised) for private methods, the plain mean otherwise,
4. smooths the factor gradients with the 5-tap filter if ``method.smooth``,
5. takes an optimizer step (B at ``method.lr_b_multiplier`` times the learning rate).

LA-LoRA and DP-LoRA differ only in step 1 (their schedule) and the filter flag. The authors' variant
(``lalora-authors``) differs from LA-LoRA only in B's learning rate and in taking the filtered gradient
as a second step after the plain one (:func:`extra_filter_step`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from .data import Dataset, dataset_size, subset, to_device
from .lora import factor_of, set_active
from .methods import Method
from .models import forward_logits
from .per_example import per_example_gradients
from .precision import forward_precision, loss_scale, unscale_per_example
from .privacy import RandomSource, Release, noisy_gradient, poisson_batch, shuffled_batch
from .smoothing import PAPER_TAPS, smooth_factor_gradient

OPTIMIZERS = ("sgd", "adamw")


@dataclass(frozen=True)
class LocalConfig:
    """Hyper-parameters of a client's local training (same for every method)."""

    local_steps: int = 20
    batch_size: int = 16  # expected batch size of the Poisson sample
    lr: float = 0.05
    optimizer: str = "sgd"
    weight_decay: float = 0.0
    clip_norm: float = 1.0
    sampling: str = "poisson"  # or "shuffle": fixed-size batches, only approximately private
    precision: str = "fp32"  # the forward pass: fp32, bf16 or fp16 (lalora_lite.precision; DP math stays fp32)
    filter_taps: int = PAPER_TAPS  # the filter's width for methods that smooth (lalora_lite.smoothing)


@dataclass(frozen=True)
class DPNoise:
    """The Gaussian mechanism's parameters for one client."""

    noise_multiplier: float
    sample_rate: float
    clip_norm: float
    expected_batch_size: float


class Canary(Protocol):
    """An audit's hook into the DP step (see :mod:`lalora_lite.diagnostics.audit`): it may add a canary example's
    gradient before clipping and reads the privatised gradient before any post-processing."""

    def add(self, per_example: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]: ...

    def observe(self, noisy: dict[str, torch.Tensor]) -> None: ...


def make_optimizer(
    params: dict[str, nn.Parameter], cfg: LocalConfig, lr_b_multiplier: float = 1.0
) -> torch.optim.Optimizer:
    """SGD or AdamW with one parameter group per learning rate (B gets ``lr * lr_b_multiplier``)."""
    b_params = [p for n, p in params.items() if factor_of(n) == "B"]
    other = [p for n, p in params.items() if factor_of(n) != "B"]
    groups = [{"params": other, "lr": cfg.lr}, {"params": b_params, "lr": cfg.lr * lr_b_multiplier}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; allowed: {', '.join(OPTIMIZERS)}")


def summed_loss(model: nn.Module, batch: Dataset, precision: str = "fp32") -> torch.Tensor:
    """Sum of per-example cross-entropy losses (per-example gradients need the sum, not the mean);
    the forward pass in ``precision``, the loss in float32."""
    with forward_precision(precision, batch["labels"].device):
        logits = forward_logits(model, batch)
    return F.cross_entropy(logits.float(), batch["labels"], reduction="sum")


def step_gradient(
    model: nn.Module,
    params: dict[str, nn.Parameter],
    active: Iterable[str],
    batch: Dataset,
    dp: DPNoise | None,
    generator: RandomSource,
    canary: Canary | None = None,
    precision: str = "fp32",
    release: Release = noisy_gradient,
) -> tuple[dict[str, torch.Tensor], float]:
    """Gradient of the active parameters on ``batch`` and the batch's mean loss.

    With ``dp``: the DP-SGD noisy gradient (released even for an empty batch).
    Without: the mean gradient (no gradient, hence no step, for an empty batch).
    ``canary`` (audits only, needs ``dp``): adds its example before clipping, observes the release.
    ``precision``: of the forward pass; gradients, clipping and noise are float32
    (:mod:`lalora_lite.precision`). ``release``: the DP release, :func:`~lalora_lite.privacy.noisy_gradient`;
    only the explanation study swaps it, for arms that are not private (``lalora_lite.study.arms``).
    """
    active = list(active)
    b = batch["labels"].shape[0]
    scale = loss_scale(precision)
    if dp is None:
        if b == 0:
            return {}, float("nan")
        loss = summed_loss(model, batch, precision) / b
        grads = torch.autograd.grad(loss * scale, [params[n] for n in active])
        return {n: g / scale for n, g in zip(active, grads)}, loss.item()
    losses: list[torch.Tensor] = []

    def loss_fn() -> torch.Tensor:
        loss = summed_loss(model, batch, precision)
        losses.append(loss.detach())  # read after the step: .item() here would stall a GPU mid-step
        return loss * scale

    if b == 0:
        per_example = {n: params[n].new_zeros((0, *params[n].shape)) for n in active}
    else:
        per_example = per_example_gradients(model, loss_fn, b)
    if precision != "fp32":
        per_example, dropped = unscale_per_example(per_example, scale)
        if dropped:
            warnings.warn(
                f"{dropped} of {b} examples had a non-finite {precision} gradient and contributed zero "
                "(per example, before clipping: the privacy guarantee is unchanged)",
                stacklevel=2,
            )
    if canary is not None:
        per_example = canary.add(per_example)
    noisy = release(per_example, dp.clip_norm, dp.noise_multiplier, dp.expected_batch_size, generator)
    if canary is not None:
        canary.observe(noisy)
    return noisy, losses[0].item() / b if losses else float("nan")


def smooth_gradients(grads: dict[str, torch.Tensor], taps: int = PAPER_TAPS) -> dict[str, torch.Tensor]:
    """Apply the low-pass filter to factor gradients; head gradients pass unchanged."""
    return {n: (smooth_factor_gradient(g, kind, taps) if (kind := factor_of(n)) else g) for n, g in grads.items()}


@torch.no_grad()
def extra_filter_step(
    optimizer: torch.optim.Optimizer, params: dict[str, nn.Parameter], grads: dict[str, torch.Tensor], taps: int
) -> None:
    """The authors' filter: after the optimizer's step on ``g``, a second plain step ``p -= lr * filter(g)``
    on each factor (at its group's learning rate, so B's is doubled too); the head takes no second step."""
    lr_of = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    for name, g in grads.items():
        if (kind := factor_of(name)) is not None:
            params[name].sub_(smooth_factor_gradient(g, kind, taps), alpha=lr_of[id(params[name])])


def local_update(
    model: nn.Module,
    params: dict[str, nn.Parameter],
    data: Dataset,
    method: Method,
    round_index: int,
    steps: int,
    cfg: LocalConfig,
    dp: DPNoise | None,
    generator: RandomSource,
    on_step: Callable[[int], None] | None = None,
    canary: Canary | None = None,
    release: Release = noisy_gradient,
) -> float:
    """Run ``steps`` local steps of ``method`` on one client's ``data``; returns the mean training loss.

    ``on_step(k)`` is called after the optimizer step ``k`` (for diagnostics); ``canary`` is the
    privacy audit's hook into every DP step (:class:`lalora_lite.diagnostics.audit.CanaryInUpdate`);
    ``release`` replaces the DP release (:func:`step_gradient`; the explanation study's arms only).
    """
    if method.private != (dp is not None):
        raise ValueError(f"method {method.name!r} is {'' if method.private else 'not '}private; dp={dp}")
    if canary is not None and dp is None:
        raise ValueError("a canary audits the DP step: it needs a private method")
    model.train()
    device = next(iter(params.values())).device
    n = dataset_size(data)
    optimizer = make_optimizer(params, cfg, method.lr_b_multiplier)
    sample_rate = min(1.0, cfg.batch_size / n)
    losses = []
    for k in range(steps):
        active = set_active(params, method.active(round_index, k))
        if cfg.sampling == "poisson":
            idx = poisson_batch(n, sample_rate, generator)
        else:
            idx = shuffled_batch(n, cfg.batch_size, generator)
        batch = to_device(subset(data, idx), device)
        grads, loss = step_gradient(model, params, active, batch, dp, generator, canary, cfg.precision, release)
        if method.smooth and not method.filter_as_extra_step:
            grads = smooth_gradients(grads, cfg.filter_taps)
        optimizer.zero_grad(set_to_none=True)
        for name, g in grads.items():
            params[name].grad = g
        optimizer.step()
        if method.smooth and method.filter_as_extra_step:
            extra_filter_step(optimizer, params, grads, cfg.filter_taps)
        losses.append(loss)
        if on_step is not None:
            on_step(k)
    finite = [x for x in losses if x == x]
    return sum(finite) / len(finite) if finite else float("nan")


def pretrain(
    model: nn.Module,
    data: Dataset,
    steps: int,
    batch_size: int = 64,
    lr: float = 2e-3,
    seed: int = 0,
    precision: str = "fp32",
) -> float:
    """Non-private full training with AdamW (the "public pretraining" of a stand-in backbone).

    Returns the last batch's loss. Trains every parameter; call before :func:`inject_lora`. The forward
    pass runs in ``precision`` (``bf16``/``fp16`` autocast on a GPU; the weights stay float32, and fp16
    scales the loss with a ``GradScaler``).
    """
    model.train()
    device = next(model.parameters()).device
    for p in model.parameters():
        p.requires_grad_(True)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    n = dataset_size(data)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        batch = to_device(subset(data, torch.randint(0, n, (batch_size,), generator=generator)), device)
        loss = summed_loss(model, batch, precision) / batch_size
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    return loss.item()


@torch.no_grad()
def evaluate(model: nn.Module, data: Dataset, batch_size: int = 256, precision: str = "fp32") -> tuple[float, float]:
    """``(accuracy, mean cross-entropy)`` of the model on ``data`` (forward pass in ``precision``)."""
    model.eval()
    device = next(model.parameters()).device
    n = dataset_size(data)
    correct, total_loss = 0, 0.0
    for start in range(0, n, batch_size):
        batch = to_device({k: v[start : start + batch_size] for k, v in data.items()}, device)
        with forward_precision(precision, device):
            logits = forward_logits(model, batch).float()
        total_loss += F.cross_entropy(logits, batch["labels"], reduction="sum").item()
        correct += (logits.argmax(-1) == batch["labels"]).sum().item()
    return correct / n, total_loss / n
