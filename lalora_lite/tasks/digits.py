"""``digits-swin``: sklearn's digits on a tiny Swin, for the tests and quick demos (seconds on a CPU)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from ..data import dirichlet_partition, subset
from ..lora import inject_lora
from ..models import tiny_swin
from ..training import pretrain
from .common import Task


def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    """sklearn's digits as ``(N, 1, 8, 8)`` images scaled to [-1, 1] and ``(N,)`` labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0 - 0.5) / 0.5
    return images, torch.tensor(digits.target)


@lru_cache(maxsize=4)
def _pretrained_digits_state(steps: int, seed: int) -> dict[str, torch.Tensor]:
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
    """Digits: public 0-4 pretrain a tiny Swin (8 px, patch 1); private 5-9 split 80/20 into clients/test."""
    images, labels = _digits()
    public = labels < 5
    backbone = tiny_swin(num_classes=5, img_size=8, patch_size=1, seed=seed)
    backbone.model.load_state_dict(_pretrained_digits_state(pretrain_steps, seed))
    torch.manual_seed(seed)
    backbone.model.reset_classifier(5)
    inject_lora(backbone.model, backbone.targets, rank=rank, alpha=lora_alpha, head=backbone.head)
    private = {"pixel_values": images[~public], "labels": labels[~public] - 5}
    order = torch.from_numpy(np.random.default_rng(seed).permutation(int((~public).sum())))
    split = int(0.8 * len(order))
    train, test = subset(private, order[:split]), subset(private, order[split:])
    parts = dirichlet_partition(train["labels"].numpy(), num_clients, alpha, seed, min_size=32)
    clients = [subset(train, torch.from_numpy(p)) for p in parts]
    return Task(
        "digits-swin",
        "sklearn digits 5-9, tiny Swin (demo stand-in)",
        backbone,
        clients,
        test,
        test,
        tuple(str(d) for d in range(5, 10)),
    )
