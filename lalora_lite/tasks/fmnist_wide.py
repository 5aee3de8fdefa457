"""``fmnist-swin-wide``: the vision stand-in at a width where LoRA's noise terms have Swin-B's sizes.

At the small stand-in's widths (48-96) the product of the two factors' noises has 5-11x less power
than at Swin-B's (512-1024), the one scale effect that works against LA-LoRA there. This task keeps the
data and the split of ``fmnist-swin`` (public Fashion-MNIST classes 0-4 for pretraining, private 5-9
for fine-tuning) on a timm Swin of widths 192/384/768 and depths (2, 2, 4) at patch 2 (:data:`WIDE`,
34.3M parameters), pretrained by the project, non-privately, on the public classes: on a GPU with a
half-precision forward pass in a few minutes, and cached (nothing is downloaded but Fashion-MNIST). The
``gpu`` profile fine-tunes it at the paper's LoRA shape (r = 16, alpha = 16, 20 local steps); the
``smoke`` profile runs the same code on a tiny Swin (:data:`ARCHS`, the profile's ``swin_arch``) in
seconds on a CPU. A task source ``pretrain_device`` says where to pretrain (default: a GPU if there is one).
"""

from __future__ import annotations

import hashlib
import json

import torch

from ..checkpoint import save_atomically
from ..models import Backbone, tiny_swin, with_preprocessing
from ..training import pretrain
from .common import Task, TaskSpec, adapt, cache_dir, first_examples, split_pool
from .fmnist import FMNIST_MEAN, FMNIST_PUBLIC, FMNIST_STD, PRIVATE_CLASSES, PUBLIC_CLASSES, fmnist_classes
from .loaders import FASHION_MNIST_CLASSES
from .profiles import Profile

WIDE = {"patch_size": 2, "embed_dim": 192, "depths": (2, 2, 4), "num_heads": (6, 12, 24)}
ARCHS = {"wide": WIDE, "tiny": {"patch_size": 4, "embed_dim": 16, "depths": (1, 1), "num_heads": (1, 2)}}
PRETRAIN = {"batch_size": 128, "lr": 1e-3, "seed": 0}  # AdamW on the public classes, as the small stand-in


def wide_backbone(arch: dict, seed: int = 0) -> Backbone:
    """The wide Swin at 32 px (window 4: 16, 8 and 4 patches a side in its three stages) with Fashion-MNIST's
    normalisation, a fresh 5-class head."""
    net = tiny_swin(FMNIST_PUBLIC, in_chans=1, img_size=32, seed=seed, **arch)
    return with_preprocessing(net, 32, FMNIST_MEAN, FMNIST_STD)


def pretrained_wide(steps: int, arch: dict, device: str, precision: str) -> Backbone:
    """The wide backbone after ``steps`` of public pretraining on ``device``, built once and cached under a
    name that digests the architecture, the steps and the recipe (the file appears only when whole)."""
    recipe = json.dumps({"arch": arch, "steps": steps, "precision": precision, **PRETRAIN}, sort_keys=True)
    cached = cache_dir() / f"fmnist-swin-wide-{hashlib.sha256(recipe.encode()).hexdigest()[:12]}.pt"
    backbone = wide_backbone(arch)
    if cached.exists():
        backbone.model.load_state_dict(torch.load(cached, weights_only=True))
        return backbone
    backbone.model.to(device)
    pretrain(backbone.model, fmnist_classes("train", PUBLIC_CLASSES), steps, precision=precision, **PRETRAIN)
    backbone.model.cpu()
    save_atomically(backbone.model.state_dict(), cached)
    return backbone


def build_fmnist_swin_wide(spec: TaskSpec, profile: Profile, seed: int) -> Task:
    if profile.swin_arch not in ARCHS:
        raise ValueError(f"swin_arch {profile.swin_arch!r} is not one of {', '.join(ARCHS)}")
    arch = ARCHS[profile.swin_arch]
    device = spec.source.get("pretrain_device") or ("cuda" if torch.cuda.is_available() else "cpu")
    backbone = pretrained_wide(profile.pretrain_steps, arch, device, profile.precision if device != "cpu" else "fp32")
    backbone = adapt(backbone, profile, len(PRIVATE_CLASSES), seed)
    clients, val = split_pool(fmnist_classes("train", PRIVATE_CLASSES), profile, seed)
    test = first_examples(fmnist_classes("test", PRIVATE_CLASSES), profile.test_size, 0)
    return Task(spec.name, spec.description, backbone, clients, val, test, FASHION_MNIST_CLASSES[FMNIST_PUBLIC:])
