"""Noise amplification (notebook 02): DP noise on both factors reaches ``W`` multiplied.

DP noise ``N_A, N_B`` (std ``tau`` each) reaches ``W`` as ``s (N_B A + B N_A) + s N_B N_A``: a linear
part and a product of two noises, which per-step alternation removes within a step (not within a
round: see :func:`accumulated_noise`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch


def noise_terms(
    A: torch.Tensor,
    B: torch.Tensor,
    tau: float,
    scale: float,
    samples: int = 64,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """Monte Carlo RMS Frobenius norms of the noise reaching ``W`` when both factors get noise of std ``tau``.

    ``linear = s (N_B A + B N_A)``, ``quadratic = s N_B N_A``, and ``full = N_W`` (full fine-tuning:
    noise of std ``tau`` on every entry of ``W``). Closed forms (``A: (r, n)``, ``B: (m, r)``):
    ``E||linear||^2 = s^2 tau^2 (m ||A||^2 + n ||B||^2)``, ``E||quadratic||^2 = s^2 tau^4 m n r``,
    ``E||full||^2 = tau^2 m n``; returned as ``*_expected``.
    """
    r, n = A.shape
    m = B.shape[0]
    lin, quad = 0.0, 0.0
    for _ in range(samples):
        NA = tau * torch.randn(A.shape, generator=generator)
        NB = tau * torch.randn(B.shape, generator=generator)
        lin += (scale * (NB @ A + B @ NA)).pow(2).sum().item()
        quad += (scale * NB @ NA).pow(2).sum().item()
    return {
        "linear": math.sqrt(lin / samples),
        "quadratic": math.sqrt(quad / samples),
        "linear_expected": scale * tau * math.sqrt(m * A.pow(2).sum().item() + n * B.pow(2).sum().item()),
        "quadratic_expected": scale * tau**2 * math.sqrt(m * n * r),
        "full_expected": tau * math.sqrt(m * n),
    }


def accumulated_noise(
    A: torch.Tensor,
    B: torch.Tensor,
    tau: float,
    scale: float,
    active: Callable[[int, int], frozenset[str]],
    local_steps: int,
    rounds: int = 1,
    clients: int = 1,
    samples: int = 32,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """Noise reaching ``W`` after whole rounds of pure-noise federated training of one LoRA layer.

    The gradient signal is set to zero so that only noise moves the factors: at local step ``k`` of
    round ``t`` every client adds ``N(0, tau^2)`` entries to the factors ``active(t, k)`` names
    ("A", "B"); after each round the server averages the ``clients`` clients' factors (FedAvg).
    With ``dA = A_end - A``, ``dB = B_end - B`` (``A: (r, n)``, ``B: (m, r)``) it returns RMS Frobenius
    norms over ``samples`` draws of ``linear = s (dB A + B dA)`` and ``product = s dB dA``, and the
    closed forms: entries of ``dA`` have variance ``v_A = tau^2 sum_t k_A(t) / clients`` (``k_A(t)``:
    steps of round t that move A), likewise ``v_B``; ``E||linear||^2 = s^2 (v_B m ||A||^2 + v_A n ||B||^2)``,
    ``E||product||^2 = s^2 v_A v_B m n r``. A per-step alternating schedule has a zero product *per
    step*, but not per round: B carries the noise of the round's earlier B-steps into the A-steps.
    """
    r, n = A.shape
    m = B.shape[0]
    dA, dB = torch.zeros(samples, r, n), torch.zeros(samples, m, r)
    steps_a = steps_b = 0
    for t in range(rounds):
        schedule = [active(t, k) for k in range(local_steps)]
        round_a, round_b = torch.zeros(samples, r, n), torch.zeros(samples, m, r)
        for _ in range(clients):
            for factors in schedule:
                if "A" in factors:
                    round_a += tau * torch.randn(samples, r, n, generator=generator)
                if "B" in factors:
                    round_b += tau * torch.randn(samples, m, r, generator=generator)
        steps_a += sum("A" in factors for factors in schedule)
        steps_b += sum("B" in factors for factors in schedule)
        dA += round_a / clients  # FedAvg: every client started from the same global factors
        dB += round_b / clients
    linear = scale * (dB @ A + B @ dA)
    product = scale * dB @ dA
    v_a, v_b = tau**2 * steps_a / clients, tau**2 * steps_b / clients
    return {
        "linear": linear.pow(2).sum((1, 2)).mean().sqrt().item(),
        "product": product.pow(2).sum((1, 2)).mean().sqrt().item(),
        "linear_expected": scale * math.sqrt(v_b * m * A.pow(2).sum().item() + v_a * n * B.pow(2).sum().item()),
        "product_expected": scale * math.sqrt(v_a * v_b * m * n * r),
    }
