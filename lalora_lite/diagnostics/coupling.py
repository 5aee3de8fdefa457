"""Gradient coupling (notebook 01): how one step of both factors moves ``W = W0 + s B A``.

One step moves ``W`` by ``dW = s (dB A + B dA + dB dA)``: two linear terms and the cross term
``s dB dA`` that appears only when both factors move in the same step. LA-LoRA's per-step
alternation leaves only one linear term per step. Also the cross-client measures of FedAvg's
aggregation error: ``mean(B_i) mean(A_i)`` is not ``mean(B_i A_i)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from ..lora import lora_layers


def coupling_terms(
    A: torch.Tensor, B: torch.Tensor, dA: torch.Tensor, dB: torch.Tensor, scale: float
) -> dict[str, torch.Tensor]:
    """The three parts of ``dW = s[(B + dB)(A + dA) - B A]``; they sum to ``dW`` exactly.

    ``A, dA: (r, n)``, ``B, dB: (m, r)``; returns ``(m, n)`` tensors ``dB_A``, ``B_dA``, ``dB_dA``.
    """
    return {"dB_A": scale * dB @ A, "B_dA": scale * B @ dA, "dB_dA": scale * dB @ dA}


def coupling_norms(
    before: dict[str, torch.Tensor], after: dict[str, torch.Tensor], model: nn.Module
) -> dict[str, float]:
    """Frobenius norms of the three parts summed in quadrature over all LoRA layers of ``model``.

    ``before``/``after``: LoRA states (name -> tensor) around one or more optimizer steps.
    ``cross_share`` is ``||dB dA|| / ||dW||``: how much of the step is the non-descent cross term.
    """
    totals = {"dB_A": 0.0, "B_dA": 0.0, "dB_dA": 0.0, "dW": 0.0}
    for name, layer in lora_layers(model).items():
        A, B = before[f"{name}.lora_A"], before[f"{name}.lora_B"]
        dA, dB = after[f"{name}.lora_A"] - A, after[f"{name}.lora_B"] - B
        parts = coupling_terms(A, B, dA, dB, layer.scale)
        for key, value in parts.items():
            totals[key] += value.pow(2).sum().item()
        totals["dW"] += sum(parts.values()).pow(2).sum().item()
    norms = {k: math.sqrt(v) for k, v in totals.items()}
    norms["cross_share"] = norms["dB_dA"] / norms["dW"] if norms["dW"] > 0 else 0.0
    return norms


def delta_w(
    state: dict[str, torch.Tensor], reference: dict[str, torch.Tensor], model: nn.Module
) -> dict[str, torch.Tensor]:
    """Per layer, ``s (B A - B_ref A_ref)``: how a client moved the effective weight."""
    return {
        name: layer.scale
        * (
            state[f"{name}.lora_B"] @ state[f"{name}.lora_A"]
            - reference[f"{name}.lora_B"] @ reference[f"{name}.lora_A"]
        )
        for name, layer in lora_layers(model).items()
    }


def pairwise_cosine(updates: Sequence[dict[str, torch.Tensor]]) -> float:
    """Mean cosine similarity between the flattened updates of every pair of clients."""
    flat = [torch.cat([u[k].flatten() for k in sorted(u)]) for u in updates]
    sims = [
        torch.nn.functional.cosine_similarity(flat[i], flat[j], dim=0).item()
        for i in range(len(flat))
        for j in range(i + 1, len(flat))
    ]
    return sum(sims) / len(sims) if sims else float("nan")


def aggregation_gap(states: Sequence[dict[str, torch.Tensor]], model: nn.Module) -> float:
    """``||mean(B_i) mean(A_i) - mean(B_i A_i)|| / ||mean(B_i A_i)||`` over all layers (FedAvg's factor error)."""
    num, den = 0.0, 0.0
    for name in lora_layers(model):
        As = torch.stack([s[f"{name}.lora_A"] for s in states])
        Bs = torch.stack([s[f"{name}.lora_B"] for s in states])
        product_of_means = Bs.mean(0) @ As.mean(0)
        mean_of_products = (Bs @ As).mean(0)
        num += (product_of_means - mean_of_products).pow(2).sum().item()
        den += mean_of_products.pow(2).sum().item()
    return math.sqrt(num / den) if den > 0 else 0.0
