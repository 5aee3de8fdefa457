"""The paper's tasks (GPU, internet): Swin-T/B on CIFAR-100 or Tiny-ImageNet at 224 px, RoBERTa-base on GLUE,
built from the Hugging Face hub (or a local ``save_to_disk`` copy of the same format).
"""

from __future__ import annotations

import numpy as np
import torch

from ..data import Dataset
from ..models import hf_classifier, timm_swin, with_preprocessing
from .common import Task, TaskSpec, adapt, first_examples, split_pool
from .loaders import load_hub_images, load_hub_text
from .profiles import Profile

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _images_to_tensor(images: list) -> torch.Tensor:
    """PIL images (any mode) -> ``uint8 (N, 3, H, W)``."""
    return torch.from_numpy(np.stack([np.asarray(im.convert("RGB")) for im in images])).permute(0, 3, 1, 2).contiguous()


def build_hub_images(spec: TaskSpec, profile: Profile, seed: int) -> Task:
    src = spec.source
    images, labels = load_hub_images(src["dataset"], src["train_split"], src["image_key"], src["label_key"])
    test_images, test_labels = load_hub_images(src["dataset"], src["test_split"], src["image_key"], src["label_key"])
    num_classes = int(max(labels.max(), test_labels.max())) + 1
    pool = {"pixel_values": _images_to_tensor(images), "labels": torch.from_numpy(labels)}
    test = first_examples(
        {"pixel_values": _images_to_tensor(test_images), "labels": torch.from_numpy(test_labels)}, profile.test_size, 0
    )
    clients, val = split_pool(pool, profile, seed)
    net = timm_swin(src["model"], num_classes, pretrained=src.get("pretrained", True), **src.get("model_kwargs", {}))
    backbone = with_preprocessing(net, src.get("image_size", 224), IMAGENET_MEAN, IMAGENET_STD)
    names = tuple(str(i) for i in range(num_classes))
    return Task(spec.name, spec.description, adapt(backbone, profile, num_classes, seed), clients, val, test, names)


def build_glue(spec: TaskSpec, profile: Profile, seed: int) -> Task:
    from transformers import AutoTokenizer

    src = spec.source
    tokenizer = AutoTokenizer.from_pretrained(src["model"])

    def encode(split: str) -> Dataset:
        texts, labels = load_hub_text(src["dataset"], split, src["text_keys"], "label", src.get("config"))
        columns = list(zip(*texts))
        enc = tokenizer(
            *columns, padding="max_length", truncation=True, max_length=profile.max_length, return_tensors="pt"
        )
        return {**dict(enc), "labels": torch.from_numpy(labels)}

    pool, test = encode(src["train_split"]), first_examples(encode(src["test_split"]), profile.test_size, 0)
    num_classes = int(pool["labels"].max()) + 1
    clients, val = split_pool(pool, profile, seed)
    backbone = adapt(hf_classifier(src["model"], num_classes), profile, num_classes, seed)
    return Task(spec.name, spec.description, backbone, clients, val, test, tuple(str(i) for i in range(num_classes)))
