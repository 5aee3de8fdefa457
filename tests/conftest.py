"""Shared fixtures: tiny models with LoRA, small batches. Everything offline."""

import importlib.util
import os
import sys
import tempfile
from pathlib import Path
from types import ModuleType

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("LALORA_CACHE", tempfile.mkdtemp(prefix="lalora-test-cache-"))  # hermetic pretraining cache

import pytest
import torch

from lalora_lite.lora import inject_lora, trainable_parameters
from lalora_lite.models import Backbone, tiny_roberta, tiny_swin

ROOT = Path(__file__).resolve().parents[1]


def load_script(folder: str, name: str) -> ModuleType:
    """Import ``ROOT/folder/name.py`` (a benchmark or script, not a package module) under ``name``."""
    spec = importlib.util.spec_from_file_location(name, ROOT / folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the script is executed
    spec.loader.exec_module(module)
    return module


def _randomise_b(backbone: Backbone) -> None:
    """B starts at zero; give it values so that A's gradient is not trivially zero."""
    with torch.no_grad():
        for name, p in trainable_parameters(backbone.model, backbone.head).items():
            if name.endswith("lora_B"):
                p.normal_(0, 0.1)


@pytest.fixture
def swin() -> Backbone:
    """A 2-stage timm Swin on 16x16 inputs: windows in the batch dim, shifted windows, patch merging."""
    torch.manual_seed(0)
    backbone = tiny_swin(num_classes=4, img_size=16, patch_size=1, depths=(2, 2), num_heads=(2, 4))
    inject_lora(backbone.model, backbone.targets, rank=4, alpha=8, head=backbone.head)
    _randomise_b(backbone)
    return backbone


@pytest.fixture
def roberta() -> Backbone:
    torch.manual_seed(0)
    backbone = tiny_roberta(num_labels=3)
    inject_lora(backbone.model, backbone.targets, rank=4, alpha=8, head=backbone.head)
    _randomise_b(backbone)
    return backbone


@pytest.fixture
def image_batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {"pixel_values": torch.randn(6, 1, 16, 16, generator=g), "labels": torch.randint(0, 4, (6,), generator=g)}


@pytest.fixture
def text_batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    mask = torch.ones(6, 12, dtype=torch.long)
    mask[::2, 8:] = 0  # padding on half of the examples
    return {
        "input_ids": torch.randint(0, 100, (6, 12), generator=g),
        "attention_mask": mask,
        "labels": torch.randint(0, 3, (6,), generator=g),
    }


def tiny_bert(num_labels: int = 3, seed: int = 0):
    """A randomly initialised 3-layer ``BertForSequenceClassification`` (pooler + classifier, as MiniLM)."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=num_labels,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return BertForSequenceClassification(config)


@pytest.fixture
def top_bert() -> Backbone:
    """The top layer of a tiny BERT on cached hidden states of its bottom 2 layers (lalora_lite.tasks.prefix)."""
    from lalora_lite.lora import BERT_TARGETS
    from lalora_lite.tasks.prefix import TopEncoder

    backbone = Backbone(TopEncoder(tiny_bert(), frozen_layers=2), ("classifier",), BERT_TARGETS)
    inject_lora(backbone.model, backbone.targets, rank=4, alpha=8, head=backbone.head)
    _randomise_b(backbone)
    return backbone


@pytest.fixture
def prefix_batch(text_batch) -> dict[str, torch.Tensor]:
    from lalora_lite.tasks.prefix import encode_prefix

    return encode_prefix(tiny_bert(), text_batch, frozen_layers=2)
