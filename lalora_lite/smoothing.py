"""LA-LoRA's Gaussian low-pass filter for noisy factor gradients.

The fixed 5-tap binomial kernel ``[1, 4, 6, 4, 1] / 16`` is applied along the
*feature* axis only, never across rank components:

* ``grad_A: (r, n)``: each row is filtered along the input dimension ``n``;
* ``grad_B: (m, r)``: each column is filtered along the output dimension ``m``.

Edges use reflect padding (mirror without repeating the edge sample, e.g.
``[x2, x1 | x0, x1, x2, ...]``). The filter is applied after clipping and noise,
so it is post-processing and costs no privacy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

BINOMIAL_KERNEL = (1.0, 4.0, 6.0, 4.0, 1.0)
MIN_FEATURES = 3  # reflect padding by 2 needs at least 3 samples


def smooth_rows(x: torch.Tensor) -> torch.Tensor:
    """Filter each row of a 2-D tensor ``(rows, length)`` along ``length``."""
    if x.ndim != 2:
        raise ValueError(f"expected a 2-D tensor, got shape {tuple(x.shape)}")
    if x.shape[1] < MIN_FEATURES:
        raise ValueError(f"the filter needs at least {MIN_FEATURES} features, got {x.shape[1]}")
    kernel = torch.tensor(BINOMIAL_KERNEL, dtype=x.dtype, device=x.device) / 16.0
    padded = F.pad(x.unsqueeze(1), (2, 2), mode="reflect")  # (rows, 1, length + 4)
    return F.conv1d(padded, kernel.view(1, 1, 5)).squeeze(1)


def smooth_factor_gradient(grad: torch.Tensor, factor: str) -> torch.Tensor:
    """Low-pass filter a factor gradient along its feature axis (``A``: dim 1, ``B``: dim 0)."""
    if factor == "A":
        return smooth_rows(grad)
    if factor == "B":
        return smooth_rows(grad.T).T
    raise ValueError(f"factor must be 'A' or 'B', got {factor!r}")
