"""The Gaussian mechanism of DP-SGD and the Poisson sampler it assumes.

For per-example gradients ``g_i`` (each a set of tensors), one noisy step is

    clip_i  = min(1, C / ||g_i||)          ||.|| = L2 norm over *all* active tensors
    g_noisy = (sum_i clip_i g_i + N(0, (sigma C)^2 I)) / b_expected

where ``b_expected = q * n`` for Poisson sampling with rate ``q`` on ``n`` examples.
Dividing by the *expected* (not the realised) batch size keeps the sensitivity at ``C``.
"""

from __future__ import annotations

import torch


def per_example_norms(per_example: dict[str, torch.Tensor]) -> torch.Tensor:
    """Flat L2 norm of each example's gradient over all tensors: ``(b,)``."""
    squared = [g.flatten(1).pow(2).sum(1) for g in per_example.values()]
    return torch.stack(squared).sum(0).sqrt()


def clip_and_sum(per_example: dict[str, torch.Tensor], clip_norm: float) -> dict[str, torch.Tensor]:
    """``sum_i min(1, C/||g_i||) g_i`` for each tensor (shape of the parameter)."""
    factors = (clip_norm / (per_example_norms(per_example) + 1e-12)).clamp(max=1.0)
    return {n: torch.einsum("i,i...->...", factors, g) for n, g in per_example.items()}


def noisy_gradient(
    per_example: dict[str, torch.Tensor],
    clip_norm: float,
    noise_multiplier: float,
    expected_batch_size: float,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """Clip each example to ``clip_norm``, sum, add ``N(0, (sigma C)^2)``, divide by ``b_expected``.

    ``per_example``: name -> ``(b, *shape)``; ``b = 0`` (an empty Poisson batch) releases pure noise.
    """
    summed = clip_and_sum(per_example, clip_norm)
    std = noise_multiplier * clip_norm
    return {
        # noise is drawn on the CPU generator (reproducible on any device), then moved
        n: (s + std * torch.randn(s.shape, generator=generator, dtype=s.dtype).to(s.device)) / expected_batch_size
        for n, s in summed.items()
    }


def poisson_batch(num_examples: int, sample_rate: float, generator: torch.Generator) -> torch.Tensor:
    """Indices of a Poisson sample: each example joins independently with probability ``q``."""
    return torch.nonzero(torch.rand(num_examples, generator=generator) < sample_rate).flatten()


def shuffled_batch(num_examples: int, batch_size: int, generator: torch.Generator) -> torch.Tensor:
    """Indices of a fixed-size random batch (without replacement).

    The accountants assume Poisson sampling, so with these batches the reported
    epsilon is only an approximation (the federated loop warns once per run).
    """
    return torch.randperm(num_examples, generator=generator)[:batch_size]
