"""Methods as schedules.

Every method runs the same local-update loop (:func:`lalora_lite.training.local_update`).
A method only says, at round ``t`` and local step ``k`` (both counted from 0):
which LoRA factors train (the classifier head trains at every step), which factors
the client uploads, whether the step is differentially private, and whether the
5-tap filter smooths the noisy factor gradients.

=================  ===============================  ==================  ======
name               trains at (t, k)                 uploads             filter
=================  ===============================  ==================  ======
fedlora            A, B  (no DP: non-private ref.)  A, B                no
dp-lora            A, B                             A, B                no
dp-lora+filter     A, B                             A, B                yes
ffa-lora           B  (A frozen at its random init) B                   no
rolora             B if t even else A  (per round)  the trained factor  no
lalora             B if k even else A  (per step)   A, B                yes
lalora-nofilter    B if k even else A  (per step)   A, B                no
dp-head            nothing (LoRA stays at init)     the head only       no
lalora-authors     B if k even else A  (per step)   A, B                extra
lalora-nodp        B if k even else A  (no DP)      A, B                no
=================  ===============================  ==================  ======

``dp-head`` is the control that asks whether LoRA helps at all under DP: the same DP step, noise,
accountant and ledger, on the classification head alone.

Two methods exist for the explanation study (``lalora explain``), not for the comparison:
``lalora-authors`` is LA-LoRA as the authors' code trains it, with this project's correct DP noise:
B at twice the learning rate, and the filter applied as an *extra* step after the plain SGD step
(``p -= lr * filter(g)``) instead of replacing the gradient; ``lalora-nodp`` is the alternation alone,
without DP and without the filter (what alternating costs when there is no noise).

B goes first in both alternating schedules: B starts at zero, so an A-step taken
while B = 0 would have a zero gradient (``grad_A = s B^T G``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

Factors = frozenset[str]
BOTH: Factors = frozenset({"A", "B"})
ONLY_A: Factors = frozenset({"A"})
ONLY_B: Factors = frozenset({"B"})


def every_step_both(t: int, k: int) -> Factors:
    return BOTH


def head_only(t: int, k: int) -> Factors:
    return frozenset()


def only_b(t: int, k: int) -> Factors:
    return ONLY_B


def alternate_per_round(t: int, k: int) -> Factors:
    return ONLY_B if t % 2 == 0 else ONLY_A


def alternate_per_step(t: int, k: int) -> Factors:
    return ONLY_B if k % 2 == 0 else ONLY_A


@dataclass(frozen=True)
class Method:
    """A federated LoRA method: a training schedule plus what travels to the server."""

    name: str
    trains: Callable[[int, int], Factors]
    private: bool = True
    smooth: bool = False
    upload_trained_only: bool = False
    lr_b_multiplier: float = 1.0  # B's learning rate over the others' (2 in the authors' LA-LoRA only)
    filter_as_extra_step: bool = False  # the filter as a second step (authors' code), not in place of g
    description: str = ""

    def active(self, round_index: int, step: int) -> Factors:
        """LoRA factors that train at local step ``step`` of round ``round_index``."""
        return self.trains(round_index, step)

    def uploads(self, round_index: int, local_steps: int) -> Factors:
        """Factors a client sends to the server after round ``round_index``."""
        if not self.upload_trained_only:
            return BOTH
        trained: set[str] = set()
        for k in range(local_steps):
            trained |= self.trains(round_index, k)
        return frozenset(trained)


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("fedlora", every_step_both, private=False, description="FedAvg + LoRA, no DP (reference)"),
        Method("dp-lora", every_step_both, description="DP-SGD on A and B at every step"),
        Method("dp-lora+filter", every_step_both, smooth=True, description="DP-LoRA + low-pass filter (ablation)"),
        Method("ffa-lora", only_b, upload_trained_only=True, description="B only, A frozen at init (Sun et al. 2024)"),
        Method(
            "rolora",
            alternate_per_round,
            upload_trained_only=True,
            description="one factor per round, B first (Chen et al. 2025)",
        ),
        Method("lalora", alternate_per_step, smooth=True, description="one factor per step, B first, + filter"),
        Method("lalora-nofilter", alternate_per_step, description="LA-LoRA without the filter (ablation)"),
        Method("dp-head", head_only, upload_trained_only=True, description="DP-SGD on the head only (control)"),
        Method(
            "lalora-authors",
            alternate_per_step,
            smooth=True,
            lr_b_multiplier=2.0,
            filter_as_extra_step=True,
            description="LA-LoRA as the authors' code trains it (B at 2x lr, filter as an extra step), correct DP",
        ),
        Method("lalora-nodp", alternate_per_step, private=False, description="LA-LoRA's alternation without DP"),
    )
}


def get_method(name: str) -> Method:
    """Look a method up by name; unknown names raise ``ValueError`` listing the known ones."""
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; allowed: {', '.join(METHODS)}") from None
