"""Vectorised per-example gradients of the *active* LoRA factors and head.

One backward pass of the summed loss gives, at every adapted layer, the gradient
``g = dL/dy`` of the layer output for every row. Each example's gradient is then a
closed-form contraction (no loop over examples), for a layer input ``x: (R, T, n)``,
``u = dropout(x)``, ``h = u A^T: (R, T, r)``, ``g: (R, T, m)``:

* LoRA ``B: (m, r)``:  ``grad_B[i] = s * sum_t g[i,t] h[i,t]^T``
* LoRA ``A: (r, n)``:  ``grad_A[i] = s * sum_t (g[i,t] B) u[i,t]^T``
* head ``W: (m, n)``:  ``grad_W[i] = sum_t g[i,t] x[i,t]^T``, ``grad_b[i] = sum_t g[i,t]``

``R`` rows need not be examples: Swin's window attention runs on
``(batch * windows, tokens, dim)`` with the windows of one image stored
contiguously. Rows are therefore folded back to examples *before* the contraction,
``(R, T, f) -> (b, (R/b) T, f)``: the sum over windows becomes part of the sum over
tokens, so clipping is per *image*, never per window, and no per-window gradient
tensor is ever materialised.

Under mixed precision (:mod:`lalora_lite.precision`) the saved activations and the incoming
gradients are cast to float32 before the contraction: per-example gradients are always float32.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from .lora import LoRALinear

LossFn = Callable[[], torch.Tensor]


def fold_rows(t: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Regroup a layer's rows by example: ``(R, ..., f) -> (b, (R/b) * T, f)``.

    The ``R/b`` contiguous rows of one example (Swin's windows of one image) join its token axis.
    """
    rows = t.shape[0]
    if rows % batch_size:
        raise RuntimeError(
            f"a layer saw {rows} rows for a batch of {batch_size} examples; cannot attribute rows to examples"
        )
    return t.reshape(batch_size, -1, t.shape[-1])


class PerExampleGradients:
    """Collects per-example gradients of the parameters that require grad.

    Attach to a model with :meth:`attached`; run one backward pass of the *summed*
    per-example loss; read :attr:`grads` (parameter name -> ``(batch, *param.shape)``).
    Supported trainable modules: :class:`LoRALinear` factors and plain ``nn.Linear``
    (the classifier head). Any other trainable module is an error.
    """

    def __init__(self, model: nn.Module, batch_size: int) -> None:
        self.model = model
        self.batch_size = batch_size
        self.grads: dict[str, torch.Tensor] = {}
        self._names = {id(p): n for n, p in model.named_parameters()}

    def _store(self, param: nn.Parameter, per_example: torch.Tensor) -> None:
        name = self._names[id(param)]
        if name in self.grads:
            raise RuntimeError(f"parameter {name} was used twice in one forward pass; not supported")
        self.grads[name] = per_example

    def _capture_lora(self, layer: LoRALinear, u: torch.Tensor, h: torch.Tensor, y: torch.Tensor) -> None:
        if not y.requires_grad:
            return
        b = self.batch_size
        u, h = fold_rows(u.detach(), b).float(), fold_rows(h.detach(), b).float()  # float32 under autocast too

        def on_grad(g: torch.Tensor) -> None:
            g = fold_rows(g, b).float()
            if layer.lora_B.requires_grad:
                self._store(layer.lora_B, torch.bmm(g.transpose(1, 2), h).mul_(layer.scale))  # (b, m, r)
            if layer.lora_A.requires_grad:
                gb = g @ layer.lora_B.detach()  # (b, T, r)
                self._store(layer.lora_A, torch.bmm(gb.transpose(1, 2), u).mul_(layer.scale))  # (b, r, n)

        y.register_hook(on_grad)

    def _capture_linear(self, layer: nn.Module, inputs: tuple[torch.Tensor, ...], y: torch.Tensor) -> None:
        if not y.requires_grad:
            return
        b = self.batch_size
        x = fold_rows(inputs[0].detach(), b).float()

        def on_grad(g: torch.Tensor) -> None:
            g = fold_rows(g, b).float()
            if layer.weight.requires_grad:
                self._store(layer.weight, torch.bmm(g.transpose(1, 2), x))  # (b, m, n)
            if layer.bias is not None and layer.bias.requires_grad:
                self._store(layer.bias, g.sum(1))

        y.register_hook(on_grad)

    @contextmanager
    def attached(self) -> Iterator[PerExampleGradients]:
        """Hook the trainable modules for the duration of the ``with`` block."""
        handles = []
        lora_modules = []
        for name, module in self.model.named_modules():
            own = [p for p in module.parameters(recurse=False) if p.requires_grad]
            if isinstance(module, LoRALinear):
                module.capture = self._capture_lora
                lora_modules.append(module)
            elif own and isinstance(module, nn.Linear):
                handles.append(module.register_forward_hook(self._capture_linear))
            elif own:
                raise TypeError(
                    f"trainable module {name} ({type(module).__name__}) has no per-example gradient rule; "
                    "only LoRA factors and nn.Linear heads can be trained privately"
                )
        try:
            yield self
        finally:
            for h in handles:
                h.remove()
            for m in lora_modules:
                m.capture = None


def per_example_gradients(model: nn.Module, loss_fn: LossFn, batch_size: int) -> dict[str, torch.Tensor]:
    """Per-example gradients of every parameter that requires grad.

    ``loss_fn()`` runs the forward pass and returns the **sum** of per-example losses.
    Returns name -> ``(batch_size, *param.shape)``; every trainable parameter is present.
    """
    engine = PerExampleGradients(model, batch_size)
    with engine.attached():
        loss = loss_fn()
        trainable = [p for p in model.parameters() if p.requires_grad]
        # autograd.grad (instead of backward) leaves .grad untouched: the hooks do the work.
        torch.autograd.grad(loss, trainable, allow_unused=True)
    expected = {n for n, p in model.named_parameters() if p.requires_grad}
    if set(engine.grads) != expected:
        raise RuntimeError(f"no per-example gradient for {sorted(expected - set(engine.grads))}")
    return engine.grads


def per_example_by_loop(
    model: nn.Module, batch_size: int, loss_of: Callable[[int], torch.Tensor]
) -> dict[str, torch.Tensor]:
    """The slow, obvious reference for :func:`per_example_gradients`: one backward pass per example.
    ``loss_of(i)`` runs a forward pass on example ``i`` alone and returns its loss; returns
    name -> ``(batch_size, *param.shape)`` for every parameter that requires grad."""
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    params = [p for p in model.parameters() if p.requires_grad]
    rows = [torch.autograd.grad(loss_of(i), params, allow_unused=True) for i in range(batch_size)]
    return {
        n: torch.stack([r[j] if r[j] is not None else torch.zeros_like(params[j]) for r in rows])
        for j, n in enumerate(names)
    }
