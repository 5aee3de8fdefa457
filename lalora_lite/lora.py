"""LoRA adapters: ``W = W0 + s * B @ A`` on selected ``nn.Linear`` layers.

Shapes for a Linear layer ``n -> m`` with rank ``r``:
``A: (r, n)`` (down-projection, Kaiming-uniform init), ``B: (m, r)`` (zero init),
``s = alpha / r``.

Why not peft: the DP engine needs each LoRA layer to hand over its intermediate
activations ``u = dropout(x)`` and ``h = u A^T`` so that per-example gradients can be
formed in closed form, and Swin's window attention puts several rows per image in
the batch dimension. peft's layers hide both, so we write the ~100 lines here
(the test suite checks that our merged weights equal peft's for the same factors).
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn

FACTORS = ("A", "B")

# The default adapted layers of the two model families used in this project.
SWIN_TARGETS = ("attn.qkv", "attn.proj")
BERT_TARGETS = ("query", "key", "value")

CaptureFn = Callable[["LoRALinear", torch.Tensor, torch.Tensor, torch.Tensor], None]


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable low-rank update.

    ``y = x W0^T + b0 + s * (dropout(x) A^T) B^T`` for ``x: (..., n)``, ``y: (..., m)``.

    When ``capture`` is set (by the per-example gradient engine) the layer passes
    ``u = dropout(x)``, ``h = u A^T`` and ``y`` to it after each forward pass.
    """

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0) -> None:
        super().__init__()
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.rank = rank
        self.scale = alpha / rank
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, device=base.weight.device))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, device=base.weight.device))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.capture: CaptureFn | None = None

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    @property
    def weight(self) -> torch.Tensor:
        """The frozen base weight (some model code reads ``layer.weight``)."""
        return self.base.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base.bias

    def delta_weight(self) -> torch.Tensor:
        """``s * B @ A``, shape ``(m, n)``."""
        return self.scale * self.lora_B @ self.lora_A

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.dropout(x)
        h = u @ self.lora_A.T
        y = self.base(x) + self.scale * (h @ self.lora_B.T)
        if self.capture is not None:
            self.capture(self, u, h, y)
        return y


def linear_layer_names(model: nn.Module) -> list[str]:
    """Names of all ``nn.Linear`` modules of ``model`` (in module order)."""
    return [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]


def _matches(name: str, pattern: str) -> bool:
    """A target matches a layer if it equals the name's suffix (``attn.qkv``) or globs it."""
    return name == pattern or name.endswith("." + pattern) or fnmatch.fnmatchcase(name, pattern)


def inject_lora(
    model: nn.Module,
    targets: Sequence[str],
    rank: int,
    alpha: float,
    dropout: float = 0.0,
    head: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> list[str]:
    """Replace matching Linear layers by :class:`LoRALinear`; freeze everything else.

    ``targets``: name suffixes or glob patterns (``"attn.qkv"``, ``"*.query"``).
    ``head``: name prefixes of modules that stay trainable (the classifier).
    ``exclude``: patterns never adapted (e.g. layers inside the head).
    Returns the adapted layer names. Raises ``ValueError`` for a bad rank/alpha/dropout
    or a target that matches no Linear layer (the message lists the ones that exist).
    """
    if not isinstance(rank, int) or rank < 1:
        raise ValueError(f"LoRA rank must be a positive integer, got {rank!r}")
    if alpha <= 0:
        raise ValueError(f"LoRA alpha must be > 0, got {alpha!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"LoRA dropout must be in [0, 1), got {dropout!r}")
    if not targets:
        raise ValueError("no LoRA targets given; pass layer name patterns such as 'attn.qkv'")
    linear_names = linear_layer_names(model)
    in_head = [n for n in linear_names if any(n == h or n.startswith(h + ".") for h in head)]
    candidates = [n for n in linear_names if n not in in_head and not any(_matches(n, e) for e in exclude)]
    chosen: list[str] = []
    for pattern in targets:
        hits = [n for n in candidates if _matches(n, pattern)]
        if not hits:
            raise ValueError(
                f"LoRA target {pattern!r} matches no Linear layer. "
                f"Linear layers in this model: {', '.join(linear_names)}"
            )
        chosen.extend(h for h in hits if h not in chosen)
    missing_heads = [h for h in head if not any(n == h or n.startswith(h + ".") for n, _ in model.named_modules())]
    if missing_heads:
        raise ValueError(f"head module(s) {missing_heads} not found in the model")

    for p in model.parameters():
        p.requires_grad_(False)
    for name in chosen:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, LoRALinear(getattr(parent, child), rank, alpha, dropout))
    for h in head:
        for p in model.get_submodule(h).parameters():
            p.requires_grad_(True)
    return chosen


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    """The adapted layers by module name."""
    return {n: m for n, m in model.named_modules() if isinstance(m, LoRALinear)}


def factor_of(param_name: str) -> str | None:
    """``"A"``, ``"B"`` or ``None`` (head) for a trainable parameter name."""
    if param_name.endswith(".lora_A"):
        return "A"
    if param_name.endswith(".lora_B"):
        return "B"
    return None


def trainable_parameters(model: nn.Module, head: Iterable[str]) -> dict[str, nn.Parameter]:
    """LoRA factors and head parameters by name: the state that travels between server and clients."""
    heads = tuple(head)
    return {
        n: p
        for n, p in model.named_parameters()
        if factor_of(n) is not None or any(n.startswith(h + ".") for h in heads)
    }


def parameter_groups(params: dict[str, nn.Parameter]) -> dict[str, dict[str, nn.Parameter]]:
    """Split trainable parameters into ``{"A": ..., "B": ..., "head": ...}``."""
    groups: dict[str, dict[str, nn.Parameter]] = {"A": {}, "B": {}, "head": {}}
    for n, p in params.items():
        groups[factor_of(n) or "head"][n] = p
    return groups


def set_active(params: dict[str, nn.Parameter], factors: Iterable[str], head: bool = True) -> list[str]:
    """Make exactly the given factors (and the head, if ``head``) require gradients.

    Returns the names of the active parameters.
    """
    wanted = set(factors)
    unknown = wanted - set(FACTORS)
    if unknown:
        raise ValueError(f"unknown LoRA factor(s) {sorted(unknown)}; allowed: {FACTORS}")
    active = []
    for n, p in params.items():
        kind = factor_of(n)
        on = (kind in wanted) if kind is not None else head
        p.requires_grad_(on)
        if on:
            active.append(n)
    return active


def lora_state(model: nn.Module, head: Iterable[str]) -> dict[str, torch.Tensor]:
    """A detached copy of the LoRA factors and head weights."""
    return {n: p.detach().clone() for n, p in trainable_parameters(model, head).items()}


@torch.no_grad()
def load_lora_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy tensors of ``state`` into the model's parameters of the same names."""
    params = dict(model.named_parameters())
    unknown = set(state) - set(params)
    if unknown:
        raise KeyError(f"state has tensors the model lacks: {sorted(unknown)[:5]}")
    for n, t in state.items():
        params[n].copy_(t)


@torch.no_grad()
def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its base weight (``W0 += s B A``) and restore plain Linears.

    Works in place and returns the model, which then has no LoRA parameters (for export).
    """
    for name, layer in list(lora_layers(model).items()):
        layer.base.weight += layer.delta_weight()
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, layer.base)
    return model
