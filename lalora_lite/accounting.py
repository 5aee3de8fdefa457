"""Privacy accounting: noise calibration and per-client budget ledgers.

The privacy unit is one training example of one client (sample-level DP). A client
that takes ``steps`` noisy steps, each on a Poisson sample with rate ``q`` and noise
multiplier ``sigma``, spends the epsilon that an accountant composes from
``(sigma, q, steps)``. Both accountants come from opacus: ``rdp`` (Renyi DP, the
moments accountant of Abadi et al.) and ``prv`` (privacy random variables, tighter).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from opacus.accountants import PRVAccountant, RDPAccountant
from opacus.accountants.accountant import IAccountant
from opacus.accountants.analysis import rdp as rdp_analysis

ACCOUNTANTS = ("rdp", "prv")
MAX_NOISE_MULTIPLIER = 1e3
MIN_NOISE_MULTIPLIER = 1e-2
# opacus' default RDP orders (1.1 ... 63), widened at both ends: the optimal order lies beyond
# 63 for few, weakly noised steps and below 1.1 for many, strongly noised ones.
RDP_ORDERS = [1.01, 1.02, 1.05, *RDPAccountant.DEFAULT_ALPHAS, *range(64, 256, 8), 256, 512, 1024]


def make_accountant(kind: str) -> IAccountant:
    """A fresh opacus accountant of kind ``"rdp"`` or ``"prv"``."""
    if kind == "rdp":
        return RDPAccountant()
    if kind == "prv":
        return PRVAccountant()
    raise ValueError(f"unknown accountant {kind!r}; allowed: {', '.join(ACCOUNTANTS)}")


@lru_cache(maxsize=4096)
def _rdp_of_one_step(noise_multiplier: float, sample_rate: float) -> np.ndarray:
    """Renyi DP of one Poisson-subsampled Gaussian step at every order in ``RDP_ORDERS``."""
    return rdp_analysis.compute_rdp(q=sample_rate, noise_multiplier=noise_multiplier, steps=1, orders=RDP_ORDERS)


def epsilon_for(
    noise_multiplier: float, sample_rate: float, steps: int, delta: float, accountant: str = "rdp"
) -> float:
    """Epsilon spent by ``steps`` Poisson-sampled Gaussian steps (``inf`` for sigma = 0).

    RDP composes additively, so the RDP of one step is computed once per ``(sigma, q)`` and
    scaled by ``steps`` (opacus' own analysis functions do the math); PRV uses opacus' accountant.
    """
    if steps == 0:
        return 0.0
    if noise_multiplier <= 0:
        return math.inf
    if accountant == "rdp":
        rdp = steps * _rdp_of_one_step(float(noise_multiplier), float(sample_rate))
        epsilon, _ = rdp_analysis.get_privacy_spent(orders=RDP_ORDERS, rdp=rdp, delta=delta)
        return float(epsilon)
    acc = make_accountant(accountant)
    acc.history = [(noise_multiplier, sample_rate, steps)]
    return float(acc.get_epsilon(delta=delta))


def check_budget_inputs(epsilon: float, delta: float, sample_rate: float, steps: int) -> None:
    """Raise ``ValueError`` naming the first out-of-range privacy parameter."""
    if not (epsilon > 0 and math.isfinite(epsilon)):
        raise ValueError(f"epsilon must be a finite number > 0, got {epsilon!r}")
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta!r}")
    if not 0 < sample_rate <= 1:
        raise ValueError(f"sample rate q must be in (0, 1], got {sample_rate!r}")
    if not (isinstance(steps, int) and steps >= 1):
        raise ValueError(f"number of noisy steps must be a positive integer, got {steps!r}")


@lru_cache(maxsize=1024)
def calibrate_noise_multiplier(
    epsilon: float,
    delta: float,
    sample_rate: float,
    steps: int,
    accountant: str = "rdp",
    rtol: float = 1e-3,
) -> float:
    """Smallest ``sigma`` (to relative precision ``rtol``) whose ``steps`` steps spend at most ``epsilon``.

    Bisection on ``log(sigma)``; the returned sigma always satisfies the budget.
    Raises ``ValueError`` if no sigma up to ``MAX_NOISE_MULTIPLIER`` meets it.
    """
    check_budget_inputs(epsilon, delta, sample_rate, steps)
    make_accountant(accountant)  # validates the name before any work

    def fits(sigma: float) -> bool:
        return epsilon_for(sigma, sample_rate, steps, delta, accountant) <= epsilon

    # bracket [low, high] with fits(high) and not fits(low), halving or doubling from sigma = 1
    # (stepping one factor of 2 at a time: PRV gets very slow at needlessly small sigma)
    low, high = 0.5, 1.0
    if fits(high):
        while fits(low) and low > MIN_NOISE_MULTIPLIER:
            low, high = low / 2, low
    else:
        while not fits(high):
            low, high = high, high * 2
            if high > MAX_NOISE_MULTIPLIER:
                raise ValueError(
                    f"the budget epsilon={epsilon}, delta={delta} cannot be met with q={sample_rate} over "
                    f"{steps} steps (noise multiplier would exceed {MAX_NOISE_MULTIPLIER:g}); "
                    "allow a larger epsilon, fewer steps or a smaller sample rate"
                )
    while high / low > 1 + rtol:
        mid = math.sqrt(low * high)
        low, high = (low, mid) if fits(mid) else (mid, high)
    return high


@dataclass
class PrivacyLedger:
    """One client's privacy spending: a noise level, a sample rate and a hard budget.

    :meth:`affordable_steps` tells how many further steps fit into the budget;
    :meth:`spend` records steps taken. The ledger never records more than fits.
    """

    noise_multiplier: float
    sample_rate: float
    epsilon_budget: float
    delta: float
    accountant: str = "rdp"
    steps: int = 0
    _epsilon_cache: dict[int, float] = field(default_factory=dict, repr=False)

    def epsilon_after(self, steps: int) -> float:
        if steps not in self._epsilon_cache:
            self._epsilon_cache[steps] = epsilon_for(
                self.noise_multiplier, self.sample_rate, steps, self.delta, self.accountant
            )
        return self._epsilon_cache[steps]

    @property
    def epsilon(self) -> float:
        """Epsilon spent so far."""
        return self.epsilon_after(self.steps)

    def affordable_steps(self, requested: int) -> int:
        """The largest ``n <= requested`` with ``epsilon_after(steps + n) <= budget``."""
        if self.epsilon_after(self.steps + requested) <= self.epsilon_budget:
            return requested
        low, high = 0, requested  # invariant: low fits, high does not
        while high - low > 1:
            mid = (low + high) // 2
            low, high = (mid, high) if self.epsilon_after(self.steps + mid) <= self.epsilon_budget else (low, mid)
        return low

    def spend(self, steps: int) -> None:
        if self.epsilon_after(self.steps + steps) > self.epsilon_budget:
            raise RuntimeError(
                f"refusing to spend {steps} steps: epsilon would reach "
                f"{self.epsilon_after(self.steps + steps):.4f} > budget {self.epsilon_budget}"
            )
        self.steps += steps

    def state_dict(self) -> dict[str, float | int | str]:
        return {
            "noise_multiplier": self.noise_multiplier,
            "sample_rate": self.sample_rate,
            "epsilon_budget": self.epsilon_budget,
            "delta": self.delta,
            "accountant": self.accountant,
            "steps": self.steps,
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, float | int | str]) -> PrivacyLedger:
        return cls(**state)  # type: ignore[arg-type]
