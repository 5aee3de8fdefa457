"""Small ready-made tasks. ``digits-swin``: sklearn's bundled 8x8 digits on a tiny timm Swin.

A task bundles a LoRA-adapted backbone, the clients' private datasets and a test set.
``digits-swin`` needs no download, so it serves the end-to-end demo and the tests:
the Swin is first trained non-privately on the *public* digits 0-4 ("pretraining"),
then gets a fresh head and LoRA adapters for private federated fine-tuning on the
digits 5-9 (relabelled 0-4), as a pretrained backbone is fine-tuned in the paper.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from .data import Dataset, dirichlet_partition, subset
from .lora import inject_lora
from .models import Backbone, tiny_swin
from .training import pretrain


@dataclass
class Task:
    name: str
    backbone: Backbone
    clients: list[Dataset]
    test: Dataset


def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    """sklearn's digits as ``(N, 1, 8, 8)`` images scaled to [-1, 1] and ``(N,)`` labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0 - 0.5) / 0.5
    return images, torch.tensor(digits.target)


@lru_cache(maxsize=4)
def _pretrained_state(steps: int, seed: int) -> dict[str, torch.Tensor]:
    """The tiny Swin after public pretraining on digits 0-4 (computed once per process)."""
    images, labels = _digits()
    public = labels < 5
    backbone = tiny_swin(num_classes=5, img_size=8, patch_size=1, seed=seed)
    pretrain(backbone.model, {"pixel_values": images[public], "labels": labels[public]}, steps, seed=seed)
    return {k: v.clone() for k, v in backbone.model.state_dict().items()}


def digits_swin(
    num_clients: int = 4,
    alpha: float = 1.0,
    rank: int = 8,
    lora_alpha: float = 16.0,
    pretrain_steps: int = 300,
    seed: int = 0,
) -> Task:
    """Digits: public 0-4 for pretraining (~900 images); private 5-9 split 80/20 into clients/test."""
    images, labels = _digits()
    public = labels < 5
    backbone = tiny_swin(num_classes=5, img_size=8, patch_size=1, seed=seed)
    backbone.model.load_state_dict(_pretrained_state(pretrain_steps, seed))
    torch.manual_seed(seed)
    backbone.model.reset_classifier(5)  # fresh head for the private label set
    inject_lora(backbone.model, backbone.targets, rank=rank, alpha=lora_alpha, head=backbone.head)

    private = {"pixel_values": images[~public], "labels": labels[~public] - 5}
    order = torch.from_numpy(np.random.default_rng(seed).permutation(int((~public).sum())))
    split = int(0.8 * len(order))
    train, test = subset(private, order[:split]), subset(private, order[split:])
    parts = dirichlet_partition(train["labels"].numpy(), num_clients, alpha, seed, min_size=32)
    return Task("digits-swin", backbone, [subset(train, torch.from_numpy(p)) for p in parts], test)
