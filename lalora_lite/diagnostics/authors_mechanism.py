"""The LA-LoRA authors' public noise mechanism, reimplemented FOR STUDY ONLY. IT IS NOT PRIVATE.

Never use it to train on private data; it is not a method of ``lalora compare``. It exists so that
notebook 08 and ``lalora audit`` can show, with the same audit code as ours, why it gives no
meaningful (epsilon, delta) guarantee. What it does per step (``../shared/PAPER.md`` section 7):

1. average the batch's gradient of each parameter tensor (the *batch mean*, not per example);
2. clip each tensor's mean to ``C' = min(median over tensors of ||mean||, 0.4)`` (data-dependent);
3. add ``N(0, (sigma C' / b)^2)`` to each tensor, with no accountant;
4. (its "filter") smooth each matrix with an FFT Laplacian smoothing over both axes, as an extra step.

Its real sensitivity. With add/remove adjacency one example changes the unclipped mean of a
tensor arbitrarily (nothing bounds an example before averaging); after clipping, each tensor's mean
has norm ``<= C'``, so one tensor moves by up to ``2 C'`` and the ``L`` tensors together by
``2 C' sqrt(L)``. The noise per coordinate is ``sigma C' / b``, so the effective noise multiplier is

    sigma_eff = (sigma C' / b) / (2 C' sqrt(L)) = sigma / (2 b sqrt(L)),

``2 b sqrt(L)`` times smaller than claimed (and ``C'`` itself, a function of the data, is released
without noise, which only adds leakage). :func:`effective_noise_multiplier` and
:func:`epsilon_actually_bought` compute what ``sigma`` really buys under the same accountant.
"""

from __future__ import annotations

import math

import torch

from ..accounting import epsilon_for

MAX_CLIP = 0.4


def authors_noisy_gradient(
    per_example: dict[str, torch.Tensor],
    noise_multiplier: float,
    generator: torch.Generator | None = None,
    max_clip: float = MAX_CLIP,
    smooth: float = 0.0,
) -> dict[str, torch.Tensor]:
    """The authors' update from per-example gradients ``(b, *shape)`` (b >= 1): steps 1-3 above,
    and step 4 when ``smooth > 0`` (an audit reads the update before it: post-processing)."""
    b = next(iter(per_example.values())).shape[0]
    means = {n: g.mean(0) for n, g in per_example.items()}
    norms = torch.stack([m.norm() for m in means.values()])
    clip = min(float(norms.median()), max_clip)
    out = {}
    for n, m in means.items():
        clipped = m * min(1.0, clip / (float(m.norm()) + 1e-12))
        noise = torch.randn(m.shape, generator=generator, dtype=m.dtype).to(m.device)
        out[n] = clipped + noise_multiplier * clip / b * noise
    return {n: fft_laplacian_smoothing(g, smooth) for n, g in out.items()} if smooth > 0 else out


def fft_laplacian_smoothing(grad: torch.Tensor, strength: float) -> torch.Tensor:
    """Laplacian smoothing of a matrix by FFT over both axes (Osher et al.'s LS-GD, in 2-D):
    ``ifft2(fft2(g) / (1 + 2 s (2 - cos(2 pi k/m) - cos(2 pi l/n))))``; vectors use one axis."""
    if grad.dim() == 1:
        k = torch.arange(grad.shape[0], dtype=grad.dtype)
        denominator = 1 + 2 * strength * (1 - torch.cos(2 * math.pi * k / grad.shape[0]))
        return torch.fft.ifft(torch.fft.fft(grad) / denominator).real
    m, n = grad.shape[-2:]
    km = torch.arange(m, dtype=grad.dtype).view(m, 1)
    kn = torch.arange(n, dtype=grad.dtype).view(1, n)
    denominator = 1 + 2 * strength * (2 - torch.cos(2 * math.pi * km / m) - torch.cos(2 * math.pi * kn / n))
    return torch.fft.ifft2(torch.fft.fft2(grad) / denominator).real


def effective_noise_multiplier(noise_multiplier: float, batch_size: int, tensors: int) -> float:
    """``sigma / (2 b sqrt(L))``: noise std over the real sensitivity ``2 C' sqrt(L)``."""
    return noise_multiplier / (2 * batch_size * math.sqrt(tensors))


def epsilon_actually_bought(
    noise_multiplier: float, batch_size: int, tensors: int, sample_rate: float, steps: int, delta: float
) -> float:
    """The epsilon the accountant gives for the effective noise multiplier (a lower estimate: it
    ignores the leak through the data-dependent clip ``C'``)."""
    return epsilon_for(effective_noise_multiplier(noise_multiplier, batch_size, tensors), sample_rate, steps, delta)
