"""Empirical privacy auditing: turn a canary attack's success into a lower bound on epsilon.

An (eps, delta)-DP mechanism bounds every test that tells "the canary was in" from "it was out":
``TPR <= e^eps FPR + delta``. An audit runs the mechanism many times with a canary included with
probability 1/2, scores each output, and turns the measured TPR/FPR into a *lower bound* on the
epsilon the mechanism really has. A correct mechanism must give bounds below its claimed epsilon;
a broken one is caught when a bound exceeds the claim.

The canary is white-box (Nasr et al. 2021, 2023): a "Dirac" per-example gradient ``G e_j`` on one
coordinate of an active LoRA factor, ``G >= C``, so that clipping leaves ``C e_j``. The score is the
privatised gradient's projection on the canary's direction, read *before* any post-processing
(filter, optimizer). Claims are audited at full batch (sample rate q = 1), where DP-SGD with T steps
is exactly ``mu``-Gaussian DP with ``mu = sqrt(T) / sigma`` (the canary is then in every step).

Statistics (numpy/scipy only):

* Clopper-Pearson: ``eps_lb = log((TPR_lb - delta) / FPR_ub)`` at a threshold chosen on one half
  of the trials and evaluated on the other half (so the choice costs no confidence);
* Gaussian DP: ``mu_lb = Phi^-1(TPR_lb) - Phi^-1(FPR_ub)`` at that threshold, then ``mu -> eps``
  (Dong, Roth & Su 2022, Cor. 2.13); rigorous against a mu-GDP claim;
* the one-run bound of Steinke, Nasr & Jagielski (2023) for m canaries in a single run.

Why not a library: ``jax_privacy.auditing`` has these estimators but installs JAX;
``tensorflow-empirical-privacy`` pins TensorFlow 2.4-era numpy/pandas; DP-Auditorium is not on
PyPI; ``privacy-estimates`` is stale; ``opacus`` has no auditing module. The formulas are short.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy import optimize, stats
from torch import nn

from ..accounting import epsilon_for
from ..lora import inject_lora, trainable_parameters
from ..methods import get_method
from ..privacy import noisy_gradient
from ..training import DPNoise, LocalConfig, local_update

Gradients = dict[str, torch.Tensor]

# --- statistics ------------------------------------------------------------------------------


def clopper_pearson(successes: int, trials: int, alpha: float) -> tuple[float, float]:
    """Exact two-sided ``1 - alpha`` interval of a binomial proportion."""
    lo = stats.beta.ppf(alpha / 2, successes, trials - successes + 1) if successes > 0 else 0.0
    hi = stats.beta.ppf(1 - alpha / 2, successes + 1, trials - successes) if successes < trials else 1.0
    return float(lo), float(hi)


def rates(scores_in: np.ndarray, scores_out: np.ndarray, threshold: float, alpha: float) -> tuple[float, float]:
    """``(TPR_lb, FPR_ub)`` of the test "score >= threshold means in" (each side at ``alpha / 2``)."""
    tpr_lb, _ = clopper_pearson(int((scores_in >= threshold).sum()), len(scores_in), alpha)
    _, fpr_ub = clopper_pearson(int((scores_out >= threshold).sum()), len(scores_out), alpha)
    return tpr_lb, fpr_ub


def epsilon_lower_bound(scores_in, scores_out, threshold: float, delta: float, alpha: float = 0.05) -> float:
    """Clopper-Pearson epsilon lower bound, both error types:
    ``max(log((TPR_lb - delta) / FPR_ub), log((TNR_lb - delta) / FNR_ub), 0)`` with
    ``TNR_lb = 1 - FPR_ub`` and ``FNR_ub = 1 - TPR_lb``; holds with confidence ``1 - alpha``."""
    tpr_lb, fpr_ub = rates(np.asarray(scores_in), np.asarray(scores_out), threshold, alpha)
    bounds = [0.0]
    for hit, false_alarm in ((tpr_lb, fpr_ub), (1 - fpr_ub, 1 - tpr_lb)):
        if hit > delta and false_alarm > 0:
            bounds.append(math.log((hit - delta) / false_alarm))
    return max(bounds)


def gdp_mu_lower_bound(scores_in, scores_out, threshold: float, alpha: float = 0.05) -> float:
    """``mu_lb = Phi^-1(TPR_lb) - Phi^-1(FPR_ub)`` (0 if negative): a mu-GDP mechanism has mu >= mu_lb."""
    tpr_lb, fpr_ub = rates(np.asarray(scores_in), np.asarray(scores_out), threshold, alpha)
    if tpr_lb <= 0 or fpr_ub >= 1:
        return 0.0
    return max(0.0, float(stats.norm.ppf(tpr_lb) - stats.norm.ppf(fpr_ub)))


def gdp_delta(mu: float, epsilon: float) -> float:
    """delta(eps) of mu-GDP: ``Phi(-eps/mu + mu/2) - e^eps Phi(-eps/mu - mu/2)``."""
    if mu <= 0:
        return 0.0
    return float(stats.norm.cdf(-epsilon / mu + mu / 2) - math.exp(epsilon) * stats.norm.cdf(-epsilon / mu - mu / 2))


def gdp_epsilon(mu: float, delta: float) -> float:
    """The epsilon of mu-GDP at ``delta`` (0 when even eps = 0 meets delta)."""
    if mu <= 0 or gdp_delta(mu, 0.0) <= delta:
        return 0.0
    high = 1.0
    while gdp_delta(mu, high) > delta:
        high *= 2
    return float(optimize.brentq(lambda e: gdp_delta(mu, e) - delta, 0.0, high, xtol=1e-10))


def gdp_mu_estimate(scores_in, scores_out) -> float:
    """Point estimate of mu: the mean shift in units of the pooled standard deviation (not a bound)."""
    scores_in, scores_out = np.asarray(scores_in), np.asarray(scores_out)
    pooled = math.sqrt((scores_in.var(ddof=1) + scores_out.var(ddof=1)) / 2)
    return float((scores_in.mean() - scores_out.mean()) / pooled)


def best_threshold(scores_in, scores_out, delta: float, alpha: float = 0.05) -> float:
    """The threshold (among the scores' quantiles) with the largest Clopper-Pearson bound."""
    candidates = np.quantile(np.concatenate([scores_in, scores_out]), np.linspace(0.01, 0.99, 99))
    return float(
        max(
            candidates,
            key=lambda t: (
                epsilon_lower_bound(scores_in, scores_out, t, delta, alpha),
                gdp_mu_lower_bound(scores_in, scores_out, t, alpha),
            ),
        )
    )


# --- the one-run bound (Steinke, Nasr & Jagielski 2023, Appendix D) ---------------------------


def one_run_p_value(m: int, r: int, v: int, epsilon: float, delta: float) -> float:
    """P-value of "v of r guesses correct" under (eps, delta)-DP with m canaries:
    ``beta + 2 m delta max_i (P[Bin(r, q) >= v - i] - beta) / i``, ``q = e^eps / (1 + e^eps)``."""
    q = math.exp(epsilon) / (1 + math.exp(epsilon))
    beta = float(stats.binom.sf(v - 1, r, q))
    below = np.cumsum(stats.binom.pmf(np.arange(v - 1, -1, -1), r, q))  # P[v - i <= Bin < v], i = 1..v
    alpha = float(np.max(below / np.arange(1, v + 1))) if v > 0 else 0.0
    return min(1.0, beta + 2 * m * delta * alpha)


def one_run_epsilon_lower_bound(m: int, r: int, v: int, delta: float, p: float = 0.05) -> float:
    """Largest epsilon rejected at level ``p`` by the one-run test (bisection to 1e-9)."""
    if not 0 <= v <= r <= m:
        raise ValueError(f"need 0 <= correct ({v}) <= guesses ({r}) <= canaries ({m})")
    if one_run_p_value(m, r, v, 0.0, delta) >= p:
        return 0.0
    low, high = 0.0, 1.0
    while one_run_p_value(m, r, v, high, delta) < p:
        low, high = high, 2 * high
    while high - low > 1e-9:
        mid = (low + high) / 2
        low, high = (mid, high) if one_run_p_value(m, r, v, mid, delta) < p else (low, mid)
    return low


# --- canaries and audits ---------------------------------------------------------------------


@dataclass(frozen=True)
class DiracCanary:
    """A per-example gradient ``magnitude * e_j`` on one coordinate of each listed parameter.

    ``coordinates``: parameter name -> flat index. At a step, only the coordinates of active
    parameters count (an example has no gradient on frozen ones), so a canary with a coordinate
    in both LoRA factors is present at every step of LA-LoRA's alternation.
    """

    coordinates: dict[str, int]
    magnitude: float

    def gradient(self, like: Gradients) -> Gradients | None:
        """The canary's per-example gradient, ``(1, *shape)`` per tensor of ``like``; None if inactive."""
        if not any(n in like for n in self.coordinates):
            return None
        direction = self.direction(like)
        return {n: (self.magnitude * direction[n]).unsqueeze(0) for n in like}

    def direction(self, like: Gradients) -> Gradients:
        """Unit vector over the (parameter-shaped) tensors of ``like`` along the canary's active coordinates."""
        active = [n for n in self.coordinates if n in like]
        out = {n: torch.zeros_like(t) for n, t in like.items()}
        for n in active:
            out[n].view(-1)[self.coordinates[n]] = 1 / math.sqrt(len(active))
        return out

    def project(self, update: Gradients) -> float:
        """``<update, direction>`` over the canary's active coordinates."""
        active = [n for n in self.coordinates if n in update]
        return sum(float(update[n].reshape(-1)[self.coordinates[n]]) for n in active) / math.sqrt(max(len(active), 1))


def with_canary(per_example: Gradients, canary: DiracCanary) -> Gradients:
    """Append the canary as one more example (rows of ``per_example`` are ``(b, *shape)``)."""
    extra = canary.gradient({n: g[0] if len(g) else g.new_zeros(g.shape[1:]) for n, g in per_example.items()})
    return per_example if extra is None else {n: torch.cat([g, extra[n]]) for n, g in per_example.items()}


Mechanism = Callable[[Gradients, torch.Generator], Gradients]


def background_gradients(
    tensors: int, size: int, examples: int, norm: float, canary: DiracCanary, seed: int
) -> Gradients:
    """``examples`` random per-example gradients over ``tensors`` tensors of ``size`` numbers each,
    each example of L2 norm ``norm``, with the canary's coordinates set to zero (the auditor picks
    the neighbouring datasets: any fixed background is allowed)."""
    g = torch.Generator().manual_seed(seed)
    raw = torch.randn(examples, tensors * size, generator=g)
    raw = raw / raw.norm(dim=1, keepdim=True) * norm
    grads = {f"t{i}": raw[:, i * size : (i + 1) * size].clone() for i in range(tensors)}
    for n, j in canary.coordinates.items():
        grads[n][:, j] = 0.0
    return grads


def audit_mechanism(
    mechanism: Mechanism, background: Gradients, canary: DiracCanary, trials: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Run ``mechanism`` ``trials`` times, the canary included with probability 1/2 each time;
    returns the scores (projection on the canary) of the "in" and the "out" trials."""
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    scores = {True: [], False: []}
    for _ in range(trials):
        included = bool(rng.random() < 0.5)
        per_example = with_canary(background, canary) if included else background
        scores[included].append(canary.project(mechanism(per_example, generator)))
    return np.asarray(scores[True]), np.asarray(scores[False])


def dp_sgd_mechanism(clip_norm: float, noise_multiplier: float, expected_batch_size: float) -> Mechanism:
    """This package's mechanism, :func:`privacy.noisy_gradient`, as an audit target."""
    return lambda per_example, generator: noisy_gradient(
        per_example, clip_norm, noise_multiplier, expected_batch_size, generator
    )


@dataclass
class AuditResult:
    mechanism: str
    claimed_epsilon: float  # what the accountant reports for the run
    claimed_mu: float  # the mu-GDP the claim corresponds to (q = 1: sqrt(T) / sigma)
    exact_epsilon: float  # the epsilon of claimed_mu-GDP (the tight value, <= the accountant's)
    trials: int
    threshold: float
    epsilon_lb_cp: float
    mu_lb: float
    epsilon_lb_gdp: float
    mu_estimate: float
    delta: float

    def to_dict(self) -> dict:
        return asdict(self)


def summarise(
    name: str,
    scores_in: np.ndarray,
    scores_out: np.ndarray,
    claimed_epsilon: float,
    claimed_mu: float,
    delta: float,
    alpha: float = 0.05,
) -> AuditResult:
    """Threshold from the first half of the trials, bounds from the second half, mu estimate from all."""
    h_in, h_out = len(scores_in) // 2, len(scores_out) // 2
    threshold = best_threshold(scores_in[:h_in], scores_out[:h_out], delta, alpha)
    test_in, test_out = scores_in[h_in:], scores_out[h_out:]
    mu_lb = gdp_mu_lower_bound(test_in, test_out, threshold, alpha)
    return AuditResult(
        mechanism=name,
        claimed_epsilon=claimed_epsilon,
        claimed_mu=claimed_mu,
        exact_epsilon=gdp_epsilon(claimed_mu, delta),
        trials=len(scores_in) + len(scores_out),
        threshold=threshold,
        epsilon_lb_cp=epsilon_lower_bound(test_in, test_out, threshold, delta, alpha),
        mu_lb=mu_lb,
        epsilon_lb_gdp=gdp_epsilon(mu_lb, delta),
        mu_estimate=gdp_mu_estimate(scores_in, scores_out),
        delta=delta,
    )


def claim(noise_multiplier: float, steps: int, delta: float) -> tuple[float, float]:
    """``(epsilon the accountant reports, mu)`` for ``steps`` full-batch steps at ``noise_multiplier``."""
    return epsilon_for(noise_multiplier, 1.0, steps, delta, "rdp"), math.sqrt(steps) / noise_multiplier


# --- the whole local update ------------------------------------------------------------------


class CanaryInUpdate:
    """Puts a :class:`DiracCanary` into every step of :func:`training.local_update` and records the
    privatised gradient's projection on it (before the filter and the optimizer)."""

    def __init__(self, canary: DiracCanary, included: bool) -> None:
        self.canary, self.included, self.score = canary, included, 0.0

    def add(self, per_example: Gradients) -> Gradients:
        return with_canary(per_example, self.canary) if self.included else per_example

    def observe(self, noisy: Gradients) -> None:
        self.score += self.canary.project(noisy)


def tiny_lora_model(features: int = 32, classes: int = 4, rank: int = 4, seed: int = 0) -> nn.Module:
    """A frozen ``features x features`` layer with rank-``rank`` LoRA, tanh, and a frozen head whose
    column 0 is zero: hidden unit 0 never reaches the loss, so no data gradient touches row 0 of B."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(features, features), nn.Tanh(), nn.Linear(features, classes))
    inject_lora(model, ("0",), rank=rank, alpha=rank)
    with torch.no_grad():  # B starts at zero; give it values so that A-steps have a gradient too
        model[0].lora_B.normal_(0, 0.1)
        model[2].weight[:, 0] = 0.0
    return model


def audit_local_update(
    method: str,
    noise_multiplier: float,
    steps: int,
    trials: int,
    clip_norm: float = 1.0,
    examples: int = 64,
    lr: float = 0.05,
    seed: int = 0,
    factors: tuple[str, ...] = ("A", "B"),
) -> tuple[np.ndarray, np.ndarray]:
    """Audit ``training.local_update`` of ``method`` on :func:`tiny_lora_model` at full batch (q = 1).

    The canary has one coordinate in each of ``factors``: ``A[0, 0]`` and/or ``B[0, 0]``. In both, it
    is in every step whichever factor is active; in one factor only, LA-LoRA's schedule shows it in
    half the steps (the audit is then loose by sqrt(2) against an accountant that counts all steps).
    The auditor picks the dataset: input feature 0 is zero (no data gradient reaches column 0 of A) and
    hidden unit 0 is cut from the loss (none reaches row 0 of B), so the score measures the mechanism.
    """
    if not factors or set(factors) - {"A", "B"}:
        raise ValueError(f"factors must be a non-empty subset of ('A', 'B'), got {factors!r}")
    model = tiny_lora_model(seed=seed)
    g = torch.Generator().manual_seed(seed)
    inputs = torch.randn(examples, 32, generator=g)
    inputs[:, 0] = 0.0
    data = {"pixel_values": inputs, "labels": torch.randint(0, 4, (examples,), generator=g)}
    canary = DiracCanary({f"0.lora_{f}": 0 for f in factors}, magnitude=100 * clip_norm)
    cfg = LocalConfig(local_steps=steps, batch_size=examples, lr=lr, optimizer="sgd", clip_norm=clip_norm)
    dp = DPNoise(noise_multiplier, 1.0, clip_norm, float(examples))
    rng = np.random.default_rng(seed)
    scores = {True: [], False: []}
    for trial in range(trials):
        local = copy.deepcopy(model)
        params = trainable_parameters(local, ())
        hook = CanaryInUpdate(canary, bool(rng.random() < 0.5))
        local_update(
            local,
            params,
            data,
            get_method(method),
            0,
            steps,
            cfg,
            dp,
            torch.Generator().manual_seed(seed * 1_000_003 + trial),
            canary=hook,
        )
        scores[hook.included].append(hook.score)
    return np.asarray(scores[True]), np.asarray(scores[False])
