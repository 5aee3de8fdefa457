"""The explanation study's arms: what a run changes besides its method, lr, clip norm and budget.

An arm names a change to the DP release or to the filter's width. Two arms are NOT PRIVATE and exist
only to explain the paper's numbers (``lalora explain``); ``lalora compare`` has no way to select
any arm (its runs use :data:`DEFAULT`):

* ``clip-only``: per-example clipping with no noise (``sigma = 0``), the dose-response's zero point;
  the client schedule and batches are those of the same budget's private run.
* ``authors-noise``: the LA-LoRA authors' mechanism (:mod:`lalora_lite.diagnostics.authors_mechanism`):
  the batch mean of each tensor clipped to a data-dependent ``C'``, noise ``sigma C' / b`` with the
  ``sigma`` our accountant calibrated for the budget; its real guarantee is far weaker (notebook 08).
* ``taps3``, ``taps9``, ``taps17``: the filter at 3, 9 or 17 binomial taps instead of the paper's 5
  (:mod:`lalora_lite.smoothing`; variance ``(taps - 1) / 4``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..diagnostics.authors_mechanism import authors_noisy_gradient
from ..privacy import RandomSource, Release, noisy_gradient
from ..smoothing import PAPER_TAPS

DEFAULT = ""


def clip_only_gradient(
    per_example: dict[str, torch.Tensor],
    clip_norm: float,
    noise_multiplier: float,
    expected_batch_size: float,
    generator: RandomSource | None = None,
) -> dict[str, torch.Tensor]:
    """:func:`~lalora_lite.privacy.noisy_gradient` at ``sigma = 0``: clipped, summed, divided by the expected
    batch size. The zero-noise draw still advances ``generator``, so the batches match the private run's."""
    return noisy_gradient(per_example, clip_norm, 0.0 * noise_multiplier, expected_batch_size, generator)


def authors_noise_gradient(
    per_example: dict[str, torch.Tensor],
    clip_norm: float,
    noise_multiplier: float,
    expected_batch_size: float,
    generator: RandomSource | None = None,
) -> dict[str, torch.Tensor]:
    """The authors' release with our calibrated ``sigma`` as its nominal multiplier (``clip_norm`` and the
    expected batch size are unused: the authors clip to ``min(median tensor norm, 0.4)`` and divide by
    the drawn batch size). An empty batch releases zeros (the authors' code never draws one)."""
    if next(iter(per_example.values())).shape[0] == 0:
        return {n: g.new_zeros(g.shape[1:]) for n, g in per_example.items()}
    return authors_noisy_gradient(per_example, noise_multiplier, generator)


@dataclass(frozen=True)
class Arm:
    """A change a study run makes besides its method: the DP release and the filter's width."""

    name: str
    release: Release = noisy_gradient
    filter_taps: int = PAPER_TAPS
    private: bool = True  # whether the run's epsilon is a guarantee
    description: str = ""


ARMS: dict[str, Arm] = {
    a.name: a
    for a in (
        Arm(DEFAULT, description="the method as compared (correct DP, the paper's 5-tap filter)"),
        Arm("clip-only", clip_only_gradient, private=False, description="clipping without noise (not private)"),
        Arm(
            "authors-noise",
            authors_noise_gradient,
            private=False,
            description="the authors' noise mechanism (not private: notebook 08)",
        ),
        Arm("taps3", filter_taps=3, description="a 3-tap filter [1, 2, 1] / 4"),
        Arm("taps9", filter_taps=9, description="a 9-tap binomial filter"),
        Arm("taps17", filter_taps=17, description="a 17-tap binomial filter"),
    )
}


def get_arm(name: str) -> Arm:
    """Look an arm up by name; unknown names raise ``ValueError`` listing the known ones."""
    try:
        return ARMS[name]
    except KeyError:
        raise ValueError(f"unknown arm {name!r}; allowed: {', '.join(repr(a) for a in ARMS)}") from None
