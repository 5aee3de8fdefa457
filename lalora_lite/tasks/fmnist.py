"""``fmnist-swin``: a small timm Swin pretrained *non-privately* on the public Fashion-MNIST classes 0-4,
then fine-tuned with DP federated LoRA on classes 5-9 (the stand-in for Swin on CIFAR-100); and
``fmnist-swin-public``, the public images a search may tune on at no privacy cost.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..checkpoint import save_atomically
from ..data import Dataset
from ..models import Backbone, tiny_swin, with_preprocessing
from ..training import pretrain
from .common import Task, TaskSpec, adapt, cache_dir, first_examples, split_pool
from .loaders import FASHION_MNIST_CLASSES, load_fashion_mnist
from .profiles import Profile

FMNIST_MEAN, FMNIST_STD = (0.2860,), (0.3530,)

FMNIST_PUBLIC = 5  # classes 0-4 are public (pretraining), 5-9 private (fine-tuning)


def _fmnist_backbone(seed: int) -> Backbone:
    net = tiny_swin(
        FMNIST_PUBLIC, in_chans=1, img_size=32, patch_size=4, embed_dim=48, depths=(2, 2), num_heads=(2, 4), seed=seed
    )
    return with_preprocessing(net, 32, FMNIST_MEAN, FMNIST_STD)


SHIPPED_WEIGHTS = Path(__file__).resolve().parent / "weights"  # built by pretrain_fmnist_swin, shipped with the package


def fmnist_classes(split: str, classes: range) -> Dataset:
    """The ``split`` images of Fashion-MNIST ``classes`` as ``uint8 (N, 1, 28, 28)``, labels from 0."""
    images, labels = load_fashion_mnist(split)
    keep = (labels >= classes.start) & (labels < classes.stop)
    return {
        "pixel_values": torch.from_numpy(images[keep]).unsqueeze(1),
        "labels": torch.from_numpy(labels[keep] - classes.start),
    }


PUBLIC_CLASSES, PRIVATE_CLASSES = range(0, FMNIST_PUBLIC), range(FMNIST_PUBLIC, 10)


def pretrain_fmnist_swin(steps: int) -> Backbone:
    """Pretrain the stand-in backbone on the public classes 0-4 (non-private, seed 0, batch 64, lr 2e-3).

    Deterministic for a given torch build and thread count; the 1,500-step result ships with the
    package (``lalora_lite/tasks/weights``) so that a fresh Colab runtime does not spend minutes on it."""
    backbone = _fmnist_backbone(seed=0)
    pretrain(backbone.model, fmnist_classes("train", PUBLIC_CLASSES), steps, batch_size=64, lr=2e-3, seed=0)
    return backbone


def pretrained_fmnist_swin(steps: int) -> Backbone:
    """The pretrained stand-in backbone: the shipped weights if there are some for ``steps``, else
    built once and cached in :func:`cache_dir`.

    The cached file appears only when complete (:func:`~lalora_lite.checkpoint.save_atomically`):
    parallel test workers or run workers that build it at once never read a half-written file."""
    name = f"fmnist-swin-public-{steps}steps.pt"
    cached = cache_dir() / name
    path = next((p for p in (SHIPPED_WEIGHTS / name, cached) if p.exists()), None)
    if path is None:
        backbone = pretrain_fmnist_swin(steps)
        save_atomically(backbone.model.state_dict(), cached)
        return backbone
    backbone = _fmnist_backbone(seed=0)
    backbone.model.load_state_dict(torch.load(path, weights_only=True))
    return backbone


def build_fmnist_swin(spec: TaskSpec, profile: Profile, seed: int) -> Task:
    backbone = adapt(pretrained_fmnist_swin(profile.pretrain_steps), profile, len(PRIVATE_CLASSES), seed)
    clients, val = split_pool(fmnist_classes("train", PRIVATE_CLASSES), profile, seed)
    test = first_examples(fmnist_classes("test", PRIVATE_CLASSES), profile.test_size, 0)  # the same for every seed
    return Task(spec.name, spec.description, backbone, clients, val, test, FASHION_MNIST_CLASSES[FMNIST_PUBLIC:])


def build_fmnist_public(spec: TaskSpec, profile: Profile, seed: int) -> Task:
    """Public data only: the *test* images of the public classes 0-4 (5,000, never used in pretraining,
    which saw their train images), dealt to clients and a validation split like the private pool. A
    search on it reads no private example: the settings it chooses cost no privacy."""
    backbone = adapt(pretrained_fmnist_swin(profile.pretrain_steps), profile, len(PUBLIC_CLASSES), seed)
    clients, val = split_pool(fmnist_classes("test", PUBLIC_CLASSES), profile, seed)
    return Task(spec.name, spec.description, backbone, clients, val, val, FASHION_MNIST_CLASSES[:FMNIST_PUBLIC])
