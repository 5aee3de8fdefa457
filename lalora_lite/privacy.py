"""The Gaussian mechanism of DP-SGD and the Poisson sampler it assumes.

For per-example gradients ``g_i`` (each a set of tensors), one noisy step is

    clip_i  = min(1, C / ||g_i||)          ||.|| = L2 norm over *all* active tensors
    g_noisy = (sum_i clip_i g_i + N(0, (sigma C)^2 I)) / b_expected

where ``b_expected = q * n`` for Poisson sampling with rate ``q`` on ``n`` examples.
Dividing by the *expected* (not the realised) batch size keeps the sensitivity at ``C``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable

import numpy as np
import torch


class SecureRandom:
    """Noise and sampling from the operating system's entropy (``os.urandom``), for deployments.

    Seeded ``torch.Generator`` streams (the default) make research runs reproducible but are
    predictable to anyone who knows the seed. This source is not reproducible by design: two runs
    differ, and a resumed run continues with fresh randomness. Uniforms have 53 random bits;
    normals come from the Box-Muller transform.
    """

    def uniform(self, n: int) -> torch.Tensor:
        """``n`` uniforms in [0, 1), float64."""
        bits = np.frombuffer(os.urandom(8 * n), dtype=np.uint64) >> np.uint64(11)
        return torch.from_numpy(bits.astype(np.float64) * 2.0**-53)

    def normal(self, n: int) -> torch.Tensor:
        """``n`` standard normals, float64."""
        u1, u2 = 1.0 - self.uniform(n), self.uniform(n)  # u1 in (0, 1]: the log is finite
        return torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2 * math.pi * u2)


RandomSource = torch.Generator | SecureRandom


def per_example_norms(per_example: dict[str, torch.Tensor]) -> torch.Tensor:
    """Flat L2 norm of each example's gradient over all tensors: ``(b,)``."""
    squared = [g.flatten(1).pow(2).sum(1) for g in per_example.values()]
    return torch.stack(squared).sum(0).sqrt()


def clip_and_sum(per_example: dict[str, torch.Tensor], clip_norm: float) -> dict[str, torch.Tensor]:
    """``sum_i min(1, C/||g_i||) g_i`` for each tensor (shape of the parameter)."""
    factors = (clip_norm / (per_example_norms(per_example) + 1e-12)).clamp(max=1.0)  # (b,)
    return {n: (factors @ g.reshape(len(g), g.shape[1:].numel())).view(g.shape[1:]) for n, g in per_example.items()}


def gaussian_noise(
    like: dict[str, torch.Tensor], std: float, generator: RandomSource | None = None
) -> dict[str, torch.Tensor]:
    """``N(0, std^2)`` tensors shaped like ``like``, on the tensors' device, in one flat draw.

    On the CPU the draws come tensor by tensor from ``generator`` (the same stream as
    ``torch.randn`` per tensor). On a GPU one 63-bit seed is taken from the CPU ``generator``
    and the noise is drawn by a CUDA generator with that seed: no host-side sampling and no
    host-to-device copy in the step, still reproducible from the run's seed on the same device type.
    A :class:`SecureRandom` source draws every number from the operating system's entropy.
    """
    if not like:
        return {}
    first = next(iter(like.values()))
    sizes = [t.numel() for t in like.values()]
    if isinstance(generator, SecureRandom):
        flat = generator.normal(sum(sizes)).to(device=first.device, dtype=first.dtype)
    elif first.device.type == "cuda":
        seed = int(torch.randint(0, 2**63 - 1, (1,), generator=generator))
        device_generator = torch.Generator(first.device).manual_seed(seed)
        flat = torch.randn(sum(sizes), generator=device_generator, device=first.device, dtype=first.dtype)
    else:
        flat = torch.empty(sum(sizes), dtype=first.dtype)
        for part in flat.split(sizes):
            part.normal_(generator=generator)
    flat = flat.mul_(std)
    return {name: part.view(t.shape) for (name, t), part in zip(like.items(), flat.split(sizes))}


def noisy_gradient(
    per_example: dict[str, torch.Tensor],
    clip_norm: float,
    noise_multiplier: float,
    expected_batch_size: float,
    generator: RandomSource | None = None,
) -> dict[str, torch.Tensor]:
    """Clip each example to ``clip_norm``, sum, add ``N(0, (sigma C)^2)``, divide by ``b_expected``.

    ``per_example``: name -> ``(b, *shape)``; ``b = 0`` (an empty Poisson batch) releases pure noise.
    """
    summed = clip_and_sum(per_example, clip_norm)
    noise = gaussian_noise(summed, noise_multiplier * clip_norm, generator)
    names = list(summed)
    # (sum + noise) / b_expected for all tensors at once: two fused kernels on a GPU instead of two per tensor
    # (the step is host-bound there), the same bits as the per-tensor expression
    released = torch._foreach_add([summed[n] for n in names], [noise[n] for n in names])
    torch._foreach_div_(released, expected_batch_size)
    return dict(zip(names, released))


# What a DP step releases: (per_example, clip_norm, noise_multiplier, expected_batch_size, generator) -> gradient.
# :func:`noisy_gradient` everywhere; the explanation study swaps in arms that are not private.
Release = Callable[[dict[str, torch.Tensor], float, float, float, RandomSource | None], dict[str, torch.Tensor]]


def poisson_batch(num_examples: int, sample_rate: float, generator: RandomSource) -> torch.Tensor:
    """Indices of a Poisson sample: each example joins independently with probability ``q``."""
    if isinstance(generator, SecureRandom):
        return torch.nonzero(generator.uniform(num_examples) < sample_rate).flatten()
    return torch.nonzero(torch.rand(num_examples, generator=generator) < sample_rate).flatten()


def shuffled_batch(num_examples: int, batch_size: int, generator: RandomSource) -> torch.Tensor:
    """Indices of a fixed-size random batch (without replacement).

    The accountants assume Poisson sampling, so with these batches the reported
    epsilon is only an approximation (the federated loop warns once per run).
    """
    if isinstance(generator, SecureRandom):
        return torch.argsort(generator.uniform(num_examples))[:batch_size]
    return torch.randperm(num_examples, generator=generator)[:batch_size]
