"""What every task is made of: the :class:`Task` a run trains on, the :class:`TaskSpec` that builds it,
and the steps the builders share (the private pool split into clients and validation, the fresh head
and LoRA).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..data import Dataset, dirichlet_partition, subset
from ..lora import inject_lora
from ..models import Backbone
from .profiles import Profile


@dataclass
class Task:
    name: str
    description: str  # goes into figure titles: says what the task stands in for
    backbone: Backbone
    clients: list[Dataset]
    val: Dataset
    test: Dataset
    class_names: tuple[str, ...]


@dataclass(frozen=True)
class TaskSpec:
    name: str
    description: str
    builder: Callable[[TaskSpec, Profile, int], Task]
    profiles: dict[str, Profile]
    source: dict = field(default_factory=dict)  # paper tasks: hub dataset and model names, keys, test split size
    public_tuning: str | None = None  # a task of public data only, on which the search may tune at no privacy cost


def cache_dir() -> Path:
    """Where built artefacts (the pretrained stand-in backbone) are kept: ``$LALORA_CACHE``, else
    ``~/.cache/lalora_lite``."""
    path = Path(os.environ.get("LALORA_CACHE", Path.home() / ".cache" / "lalora_lite"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def split_pool(pool: Dataset, profile: Profile, seed: int) -> tuple[list[Dataset], Dataset]:
    """Shuffle the private pool; take ``val_size`` for validation and ``train_size`` for the clients."""
    labels = pool["labels"]
    order = torch.from_numpy(np.random.default_rng(seed).permutation(len(labels)))
    needed = profile.val_size + profile.train_size
    if needed > len(order):
        raise ValueError(f"profile asks for {needed} private examples, the task has {len(order)}")
    val, train = subset(pool, order[: profile.val_size]), subset(pool, order[profile.val_size : needed])
    parts = dirichlet_partition(
        train["labels"].numpy(), profile.num_clients, profile.dirichlet_alpha, seed, min_size=profile.min_client_size
    )
    return [subset(train, torch.from_numpy(p)) for p in parts], val


def first_examples(data: Dataset, n: int | None, seed: int) -> Dataset:
    """``n`` examples of ``data`` in a seeded random order (``data`` itself for ``None`` or ``n`` >= its size)."""
    if n is None or n >= len(data["labels"]):
        return data
    order = torch.from_numpy(np.random.default_rng(seed + 10_000).permutation(len(data["labels"]))[:n])
    return subset(data, order)


def adapt(backbone: Backbone, profile: Profile, num_classes: int, seed: int) -> Backbone:
    """Fresh head for the private label set (seeded), LoRA on the default targets."""
    torch.manual_seed(seed)
    net = backbone.model.net if hasattr(backbone.model, "net") else backbone.model
    if hasattr(net, "reset_classifier"):
        net.reset_classifier(num_classes)
    else:  # a Hugging Face head was drawn from whatever the global generator held when it was loaded
        std = backbone.model.config.initializer_range
        for name in backbone.head:
            for layer in backbone.model.get_submodule(name).modules():
                if isinstance(layer, torch.nn.Linear):
                    torch.nn.init.normal_(layer.weight, std=std)
                    if layer.bias is not None:
                        torch.nn.init.zeros_(layer.bias)
    inject_lora(backbone.model, backbone.targets, rank=profile.rank, alpha=profile.lora_alpha, head=backbone.head)
    return backbone
