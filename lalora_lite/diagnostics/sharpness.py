"""Sharpness (notebook 03): the top Hessian eigenvalue of the loss in the trainable parameters, and
filter-normalised 1-D/2-D loss landscapes (Li et al., 2018) around a model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh
from torch import nn

from ..data import Dataset, to_device
from ..lora import lora_layers
from ..training import summed_loss

LossOnBatches = Callable[[], torch.Tensor]


def loss_function(model: nn.Module, batches: Iterable[Dataset]) -> LossOnBatches:
    """Mean cross-entropy over a fixed list of batches (eval mode: no dropout)."""
    batches = list(batches)
    total = sum(b["labels"].shape[0] for b in batches)
    device = next(model.parameters()).device

    def loss() -> torch.Tensor:
        model.eval()
        return sum(summed_loss(model, to_device(b, device)) for b in batches) / total

    return loss


def hessian_vector_product(
    loss: LossOnBatches, params: Sequence[torch.Tensor], vector: Sequence[torch.Tensor]
) -> list[torch.Tensor]:
    """``H v`` by double backpropagation: ``d/dtheta (grad L . v)``."""
    grads = torch.autograd.grad(loss(), params, create_graph=True)
    dot = sum((g * v).sum() for g, v in zip(grads, vector))
    return [h.detach() for h in torch.autograd.grad(dot, params)]


def _power_iteration(
    hvp: Callable[[list[torch.Tensor]], list[torch.Tensor]],
    shapes: list[torch.Size],
    iters: int,
    tol: float,
    generator: torch.Generator | None,
    min_iters: int = 10,
) -> tuple[float, bool, list[float]]:
    """Dominant (largest-magnitude) eigenvalue of the linear map ``hvp`` by power iteration.

    Convergence (two successive Rayleigh quotients within ``tol``, relative) is accepted only after
    ``min_iters`` products: in a space of ~1e5 dimensions a random start has a tiny overlap with the
    top eigenvector, and the first quotients can agree with each other while far below the answer."""
    v = [torch.randn(s, generator=generator) for s in shapes]
    norm = math.sqrt(sum((x * x).sum().item() for x in v))
    v = [x / norm for x in v]
    estimates: list[float] = []
    for _ in range(iters):
        hv = hvp(v)
        estimates.append(sum((h * x).sum().item() for h, x in zip(hv, v)))  # Rayleigh quotient v^T H v
        norm = math.sqrt(sum((h * h).sum().item() for h in hv))
        if norm == 0:
            return 0.0, True, estimates
        v = [h / norm for h in hv]
        if len(estimates) >= max(2, min_iters) and abs(estimates[-1] - estimates[-2]) <= tol * abs(estimates[-1]):
            return estimates[-1], True, estimates
    return estimates[-1], False, estimates


def top_hessian_eigenvalue(
    loss: LossOnBatches,
    params: Sequence[torch.Tensor],
    iters: int = 50,
    tol: float = 1e-3,
    generator: torch.Generator | None = None,
    min_iters: int = 10,
) -> tuple[float, bool, list[float]]:
    """Largest (most positive) Hessian eigenvalue, from Hessian-vector products only.

    Power iteration finds the eigenvalue of largest magnitude ``l1``. If ``l1 < 0`` (a saddle or a
    maximum), the most positive eigenvalue is found by Lanczos (``scipy.sparse.linalg.eigsh``, largest
    algebraic) within about ``iters`` more products. Power iteration on ``H - l1 I``
    would also have it as its dominant eigenvalue, but where ``|l1|`` dwarfs it (``l1 = -124``, top
    ``10.4`` on notebook 03's DP-LoRA model at epsilon = 1, seed 0) that pass creeps, and two successive
    quotients agree near 0 long before they reach the top. Returns ``(eigenvalue, converged, Rayleigh
    quotients per product)``; converged: two successive power-iteration quotients within ``tol``
    (relative), and Lanczos's own residual test at ``tol`` where it ran.
    """
    params = list(params)
    shapes = [p.shape for p in params]
    hvp = lambda v: hessian_vector_product(loss, params, v)  # noqa: E731
    dominant, converged, estimates = _power_iteration(hvp, shapes, iters, tol, generator, min_iters)
    if dominant >= 0:
        return dominant, converged, estimates
    top, converged_top, more = _most_positive_by_lanczos(hvp, shapes, iters, tol, generator)
    return top, converged and converged_top, estimates + more


def _most_positive_by_lanczos(
    hvp: Callable[[list[torch.Tensor]], list[torch.Tensor]],
    shapes: list[torch.Size],
    products: int,
    tol: float,
    generator: torch.Generator | None,
) -> tuple[float, bool, list[float]]:
    """Most positive eigenvalue of the symmetric map ``hvp`` by implicitly restarted Lanczos (ARPACK via
    scipy) in float64 around float32 products, with Lanczos bases of up to 20 vectors restarted within a
    budget of about ``products`` products; ``(eigenvalue, converged, Rayleigh quotient per product)``.
    A space of one or two dimensions is solved densely (ARPACK needs more)."""
    sizes = [math.prod(s) for s in shapes]
    n = sum(sizes)
    quotients: list[float] = []

    def apply(x: np.ndarray) -> np.ndarray:
        chunks = np.split(np.asarray(x, dtype=np.float64).ravel(), np.cumsum(sizes)[:-1])
        hv = (
            torch.cat(
                [h.reshape(-1) for h in hvp([torch.from_numpy(c).float().view(s) for c, s in zip(chunks, shapes)])]
            )
            .double()
            .numpy()
        )
        quotients.append(float(x.ravel() @ hv / (x.ravel() @ x.ravel())))
        return hv

    if n <= 2:
        return float(np.linalg.eigvalsh(np.stack([apply(e) for e in np.eye(n)]))[-1]), True, quotients
    start = torch.randn(n, generator=generator, dtype=torch.float64).numpy()
    operator = LinearOperator((n, n), matvec=apply, dtype=np.float64)
    basis = min(n, 20)
    try:
        values = eigsh(
            operator,
            k=1,
            which="LA",
            tol=tol,
            v0=start,
            ncv=basis,
            maxiter=max(1, products // basis),
            return_eigenvectors=False,
        )
        return float(values[-1]), True, quotients
    except ArpackNoConvergence as stopped:
        found = stopped.eigenvalues
        return float(found[-1] if len(found) else max(quotients)), False, quotients


def _head_parameters(model: nn.Module, head: Sequence[str]) -> list[torch.Tensor]:
    """The parameters of the head modules (names under any of the ``head`` prefixes)."""
    heads = tuple(head)
    return [p for n, p in model.named_parameters() if any(n.startswith(h + ".") for h in heads)]


@contextmanager
def merged_space(model: nn.Module, head: Sequence[str]) -> Iterator[list[torch.Tensor]]:
    """The coordinates of the merged space: each adapted layer's base weight ``W0`` and the head.

    The loss depends on ``W0`` and ``s B A`` only through ``W = W0 + s B A``, so derivatives (and
    Hessians) with respect to ``W0`` *are* those with respect to the merged ``W``: unlike the factor
    space, they do not change when ``B -> cB, A -> A/c`` rescales the factors. The base weights are
    differentiable inside the ``with`` block only.
    """
    bases = [layer.base.weight for layer in lora_layers(model).values()]
    head_params = _head_parameters(model, head)
    before = [w.requires_grad for w in bases + head_params]
    for w in bases + head_params:
        w.requires_grad_(True)
    try:
        yield bases + head_params
    finally:
        for w, flag in zip(bases + head_params, before):
            w.requires_grad_(flag)


def hessian_trace(
    loss: LossOnBatches, params: Sequence[torch.Tensor], samples: int = 20, generator: torch.Generator | None = None
) -> float:
    """Hutchinson's estimate ``E[v^T H v]`` with Rademacher ``v``."""
    params = list(params)
    total = 0.0
    for _ in range(samples):
        v = [torch.randint(0, 2, p.shape, generator=generator).float() * 2 - 1 for p in params]
        total += sum((h * x).sum().item() for h, x in zip(hessian_vector_product(loss, params, v), v))
    return total / samples


def _rows(t: torch.Tensor) -> torch.Tensor:
    """View a tensor as rows: dim 0 of a 2-D (or higher) tensor; a 1-D tensor is one row."""
    return t.reshape(t.shape[0], -1) if t.ndim > 1 else t.reshape(1, -1)


def filter_normalised_direction(
    references: Sequence[torch.Tensor], generator: torch.Generator | None = None
) -> list[torch.Tensor]:
    """A random direction whose every row has the norm of the matching reference row (Li et al., 2018).

    ``references`` are the weights being moved (or, for the merged space, ``W0 + s B A``).
    A reference row of norm zero (B at its zero init) gets a zero direction row: the
    landscape then does not move B until B has been trained.
    """
    direction = []
    for ref in references:
        d = _rows(torch.randn(ref.shape, generator=generator))
        r = _rows(ref.detach())
        direction.append((d * r.norm(dim=1, keepdim=True) / (d.norm(dim=1, keepdim=True) + 1e-12)).reshape(ref.shape))
    return direction


def landscape_weights(
    model: nn.Module, head: Sequence[str], merged: bool = False
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """``(weights to move, row-norm references)`` of a landscape.

    Default: the LoRA factors and the head (references: themselves). With ``merged``: the base
    weight of each adapted layer (so ``W = W0 + s B A`` moves as a whole; references: the merged
    ``W``) and the head.
    """
    head_params = _head_parameters(model, head)
    if not merged:
        factors = [p for n, p in model.named_parameters() if n.endswith((".lora_A", ".lora_B"))]
        return factors + head_params, factors + head_params
    layers = list(lora_layers(model).values())
    merged_w = [(layer.base.weight + layer.delta_weight()).detach() for layer in layers]
    return [layer.base.weight for layer in layers] + head_params, merged_w + head_params


@torch.no_grad()
def loss_surface(
    loss: LossOnBatches,
    weights: Sequence[torch.Tensor],
    directions: Sequence[Sequence[torch.Tensor]],
    coords: Sequence[float],
) -> torch.Tensor:
    """Loss on a 1-D line (one direction) or 2-D grid (two) of ``theta + a d1 (+ b d2)``.

    The weights are restored afterwards. Returns ``(len(coords),)`` or ``(len(coords), len(coords))``.
    """
    origin = [w.detach().clone() for w in weights]
    shape = (len(coords),) * len(directions)
    values = torch.empty(shape)
    try:
        for index in torch.cartesian_prod(*[torch.arange(len(coords))] * len(directions)).reshape(-1, len(directions)):
            for w, o, *ds in zip(weights, origin, *directions):
                w.copy_(o + sum(coords[i] * d for i, d in zip(index.tolist(), ds)))
            values[tuple(index.tolist())] = loss().item()
    finally:
        for w, o in zip(weights, origin):
            w.copy_(o)
    return values
