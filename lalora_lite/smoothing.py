"""LA-LoRA's Gaussian low-pass filter for noisy factor gradients.

The filter is a binomial kernel, the discrete Gaussian: ``taps`` = 5 (the paper's) is
``[1, 4, 6, 4, 1] / 16`` (variance 1); 3 taps ``[1, 2, 1] / 4`` (variance 1/2), 9 taps (variance 2),
17 taps (variance 4): the variance of ``taps`` taps is ``(taps - 1) / 4``. It is applied along the
*feature* axis only, never across rank components:

* ``grad_A: (r, n)``: each row is filtered along the input dimension ``n``;
* ``grad_B: (m, r)``: each column is filtered along the output dimension ``m``.

Edges use reflect padding (mirror without repeating the edge sample, e.g.
``[x2, x1 | x0, x1, x2, ...]``). The filter is applied after clipping and noise,
so it is post-processing and costs no privacy.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

PAPER_TAPS = 5  # the paper's [1, 4, 6, 4, 1] / 16


def binomial_kernel(taps: int = PAPER_TAPS) -> tuple[float, ...]:
    """The ``taps`` binomial coefficients ``C(taps - 1, i)`` (unnormalised); ``taps`` odd and >= 3."""
    if taps < 3 or taps % 2 == 0:
        raise ValueError(f"the filter's taps must be odd and >= 3, got {taps}")
    return tuple(float(math.comb(taps - 1, i)) for i in range(taps))


def min_features(taps: int = PAPER_TAPS) -> int:
    """Features a filtered axis needs: reflect padding by ``taps // 2`` needs ``taps // 2 + 1`` samples."""
    return taps // 2 + 1


def white_noise_gain(taps: int = PAPER_TAPS) -> float:
    """How much of white noise's norm the filter keeps (away from the edges): ``||kernel||_2`` of the
    normalised kernel (0.52 for 5 taps)."""
    kernel = binomial_kernel(taps)
    return math.sqrt(sum(k * k for k in kernel)) / sum(kernel)


def smooth_rows(x: torch.Tensor, taps: int = PAPER_TAPS) -> torch.Tensor:
    """Filter each row of a 2-D tensor ``(rows, length)`` along ``length``."""
    if x.ndim != 2:
        raise ValueError(f"expected a 2-D tensor, got shape {tuple(x.shape)}")
    kernel = binomial_kernel(taps)
    if x.shape[1] < min_features(taps):
        raise ValueError(f"a {taps}-tap filter needs at least {min_features(taps)} features, got {x.shape[1]}")
    weights = torch.tensor(kernel, dtype=x.dtype, device=x.device) / sum(kernel)
    half = taps // 2
    padded = F.pad(x.unsqueeze(1), (half, half), mode="reflect")  # (rows, 1, length + taps - 1)
    return F.conv1d(padded, weights.view(1, 1, taps)).squeeze(1)


def smooth_factor_gradient(grad: torch.Tensor, factor: str, taps: int = PAPER_TAPS) -> torch.Tensor:
    """Low-pass filter a factor gradient along its feature axis (``A``: dim 1, ``B``: dim 0)."""
    if factor == "A":
        return smooth_rows(grad, taps)
    if factor == "B":
        return smooth_rows(grad.T, taps).T
    raise ValueError(f"factor must be 'A' or 'B', got {factor!r}")
