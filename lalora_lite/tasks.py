"""Tasks: a LoRA-adapted backbone, private clients (Dirichlet split), validation and test sets.

Offline stand-ins (profiles ``smoke`` and ``cpu``), labelled as such in every figure:

* ``fmnist-swin``: a small timm Swin pretrained *non-privately* on the public
  Fashion-MNIST classes 0-4, then fine-tuned with DP federated LoRA on classes 5-9.
* ``wordnet-minilm``: the pretrained MiniLM-L6 classifying WordNet noun glosses into
  their 8 most frequent lexicographer categories.
* ``digits-swin``: sklearn's digits, for the quick demo and the tests.

Paper tasks (profile ``paper``, GPU + internet): Swin-T/B on CIFAR-100 or
Tiny-ImageNet at 224 px, RoBERTa-base on GLUE.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from .checkpoint import save_atomically
from .data import Dataset, dirichlet_partition, subset
from .loaders import (
    FASHION_MNIST_CLASSES,
    NOUN_LEXNAMES,
    load_fashion_mnist,
    load_hub_images,
    load_hub_text,
    load_wordnet_glosses,
)
from .lora import inject_lora
from .models import Backbone, hf_classifier, minilm, minilm_path, tiny_swin, timm_swin, with_preprocessing
from .prefix import TopEncoder, encode_prefix
from .profiles import (COLAB_TEXT, COLAB_VISION, FMNIST_CPU, FMNIST_CPU_PUBLIC, FMNIST_SMOKE, FMNIST_SMOKE_PUBLIC,
                       PAPER_TEXT, PAPER_VISION, WORDNET_CPU, WORDNET_SMOKE, Profile)
from .training import pretrain

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
FMNIST_MEAN, FMNIST_STD = (0.2860,), (0.3530,)


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
    """Where built artefacts (the pretrained stand-in backbone) are kept: ``$LALORA_CACHE`` or ``~/.cache/lalora_lite``."""
    path = Path(os.environ.get("LALORA_CACHE", Path.home() / ".cache" / "lalora_lite"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _split_pool(pool: Dataset, profile: Profile, seed: int) -> tuple[list[Dataset], Dataset]:
    """Shuffle the private pool; take ``val_size`` for validation and ``train_size`` for the clients."""
    labels = pool["labels"]
    order = torch.from_numpy(np.random.default_rng(seed).permutation(len(labels)))
    needed = profile.val_size + profile.train_size
    if needed > len(order):
        raise ValueError(f"profile asks for {needed} private examples, the task has {len(order)}")
    val, train = subset(pool, order[: profile.val_size]), subset(pool, order[profile.val_size : needed])
    parts = dirichlet_partition(train["labels"].numpy(), profile.num_clients, profile.dirichlet_alpha, seed,
                                min_size=profile.min_client_size)
    return [subset(train, torch.from_numpy(p)) for p in parts], val


def _first(data: Dataset, n: int | None, seed: int) -> Dataset:
    if n is None or n >= len(data["labels"]):
        return data
    order = torch.from_numpy(np.random.default_rng(seed + 10_000).permutation(len(data["labels"]))[:n])
    return subset(data, order)


def _adapt(backbone: Backbone, profile: Profile, num_classes: int, seed: int) -> Backbone:
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


# --- fmnist-swin -----------------------------------------------------------------------------

FMNIST_PUBLIC = 5  # classes 0-4 are public (pretraining), 5-9 private (fine-tuning)


def _fmnist_backbone(seed: int) -> Backbone:
    net = tiny_swin(FMNIST_PUBLIC, in_chans=1, img_size=32, patch_size=4, embed_dim=48, depths=(2, 2),
                    num_heads=(2, 4), seed=seed)
    return with_preprocessing(net, 32, FMNIST_MEAN, FMNIST_STD)


SHIPPED_WEIGHTS = Path(__file__).resolve().parent / "weights"  # built by pretrain_fmnist_swin, shipped with the package


def _fmnist_classes(split: str, classes: range) -> Dataset:
    """The ``split`` images of Fashion-MNIST ``classes`` as ``uint8 (N, 1, 28, 28)``, labels from 0."""
    images, labels = load_fashion_mnist(split)
    keep = (labels >= classes.start) & (labels < classes.stop)
    return {"pixel_values": torch.from_numpy(images[keep]).unsqueeze(1),
            "labels": torch.from_numpy(labels[keep] - classes.start)}


PUBLIC_CLASSES, PRIVATE_CLASSES = range(0, FMNIST_PUBLIC), range(FMNIST_PUBLIC, 10)


def pretrain_fmnist_swin(steps: int) -> Backbone:
    """Pretrain the stand-in backbone on the public classes 0-4 (non-private, seed 0, batch 64, lr 2e-3).

    Deterministic for a given torch build and thread count; the 1,500-step result ships with the
    package (``lalora_lite/weights``) so that a fresh Colab runtime does not spend minutes on it."""
    backbone = _fmnist_backbone(seed=0)
    pretrain(backbone.model, _fmnist_classes("train", PUBLIC_CLASSES), steps, batch_size=64, lr=2e-3, seed=0)
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


def _build_fmnist_swin(spec: TaskSpec, profile: Profile, seed: int) -> Task:
    backbone = _adapt(pretrained_fmnist_swin(profile.pretrain_steps), profile, len(PRIVATE_CLASSES), seed)
    clients, val = _split_pool(_fmnist_classes("train", PRIVATE_CLASSES), profile, seed)
    test = _first(_fmnist_classes("test", PRIVATE_CLASSES), profile.test_size, 0)  # the same for every seed
    return Task(spec.name, spec.description, backbone, clients, val, test, FASHION_MNIST_CLASSES[FMNIST_PUBLIC:])


def _build_fmnist_public(spec: TaskSpec, profile: Profile, seed: int) -> Task:
    """Public data only: the *test* images of the public classes 0-4 (5,000, never used in pretraining,
    which saw their train images), dealt to clients and a validation split like the private pool. A
    search on it reads no private example: the settings it chooses cost no privacy."""
    backbone = _adapt(pretrained_fmnist_swin(profile.pretrain_steps), profile, len(PUBLIC_CLASSES), seed)
    clients, val = _split_pool(_fmnist_classes("test", PUBLIC_CLASSES), profile, seed)
    return Task(spec.name, spec.description, backbone, clients, val, val, FASHION_MNIST_CLASSES[:FMNIST_PUBLIC])


# --- wordnet-minilm --------------------------------------------------------------------------

WORDNET_CLASSES = 8


@lru_cache(maxsize=2)
def _wordnet_tokens(max_length: int) -> tuple[dict[str, torch.Tensor], tuple[str, ...]]:
    """Tokenised glosses of the 8 most frequent noun categories (cached per process)."""
    from transformers import AutoTokenizer

    glosses, lexfiles = load_wordnet_glosses()
    values, counts = np.unique(lexfiles, return_counts=True)
    top = values[np.argsort(-counts, kind="stable")[:WORDNET_CLASSES]]
    keep = np.isin(lexfiles, top)
    label_of = {int(v): i for i, v in enumerate(top)}
    texts = [g for g, k in zip(glosses, keep) if k]
    labels = torch.tensor([label_of[int(v)] for v in lexfiles[keep]])
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    enc = tokenizer(texts, padding="max_length", truncation=True, max_length=max_length, return_tensors="pt")
    return {**dict(enc), "labels": labels}, tuple(NOUN_LEXNAMES[int(v)] for v in top)


def _build_wordnet_minilm(spec: TaskSpec, profile: Profile, seed: int) -> Task:
    pool, names = _wordnet_tokens(profile.max_length)
    order = torch.from_numpy(np.random.default_rng(0).permutation(len(pool["labels"])))
    test = subset(pool, order[: profile.test_size])  # fixed test set; the rest is the private pool
    clients, val = _split_pool(subset(pool, order[profile.test_size :]), profile, seed)
    backbone = minilm(WORDNET_CLASSES)
    if profile.frozen_layers:  # the frozen bottom layers run once over every example (lalora_lite.prefix)
        layers = profile.frozen_layers
        clients = [encode_prefix(backbone.model, c, layers) for c in clients]
        val, test = encode_prefix(backbone.model, val, layers), encode_prefix(backbone.model, test, layers)
        backbone = Backbone(TopEncoder(backbone.model, layers), backbone.head, backbone.targets)
    return Task(spec.name, spec.description, _adapt(backbone, profile, WORDNET_CLASSES, seed), clients, val, test, names)


# --- paper tasks (GPU, internet) ------------------------------------------------------------


def _images_to_tensor(images: list) -> torch.Tensor:
    """PIL images (any mode) -> ``uint8 (N, 3, H, W)``."""
    return torch.from_numpy(np.stack([np.asarray(im.convert("RGB")) for im in images])).permute(0, 3, 1, 2).contiguous()


def _build_hub_images(spec: TaskSpec, profile: Profile, seed: int) -> Task:
    src = spec.source
    images, labels = load_hub_images(src["dataset"], src["train_split"], src["image_key"], src["label_key"])
    test_images, test_labels = load_hub_images(src["dataset"], src["test_split"], src["image_key"], src["label_key"])
    num_classes = int(max(labels.max(), test_labels.max())) + 1
    pool = {"pixel_values": _images_to_tensor(images), "labels": torch.from_numpy(labels)}
    test = _first({"pixel_values": _images_to_tensor(test_images), "labels": torch.from_numpy(test_labels)},
                  profile.test_size, 0)
    clients, val = _split_pool(pool, profile, seed)
    net = timm_swin(src["model"], num_classes, pretrained=src.get("pretrained", True), **src.get("model_kwargs", {}))
    backbone = with_preprocessing(net, src.get("image_size", 224), IMAGENET_MEAN, IMAGENET_STD)
    names = tuple(str(i) for i in range(num_classes))
    return Task(spec.name, spec.description, _adapt(backbone, profile, num_classes, seed), clients, val, test, names)


def _build_glue(spec: TaskSpec, profile: Profile, seed: int) -> Task:
    from transformers import AutoTokenizer

    src = spec.source
    tokenizer = AutoTokenizer.from_pretrained(src["model"])

    def encode(split: str) -> Dataset:
        texts, labels = load_hub_text(src["dataset"], split, src["text_keys"], "label", src.get("config"))
        columns = list(zip(*texts))
        enc = tokenizer(*columns, padding="max_length", truncation=True, max_length=profile.max_length,
                        return_tensors="pt")
        return {**dict(enc), "labels": torch.from_numpy(labels)}

    pool, test = encode(src["train_split"]), _first(encode(src["test_split"]), profile.test_size, 0)
    num_classes = int(pool["labels"].max()) + 1
    clients, val = _split_pool(pool, profile, seed)
    backbone = _adapt(hf_classifier(src["model"], num_classes), profile, num_classes, seed)
    return Task(spec.name, spec.description, backbone, clients, val, test, tuple(str(i) for i in range(num_classes)))


# --- digits-swin (tests and quick demos) ------------------------------------------------------


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


def digits_swin(num_clients: int = 4, alpha: float = 1.0, rank: int = 8, lora_alpha: float = 16.0,
                pretrain_steps: int = 300, seed: int = 0) -> Task:
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
    return Task("digits-swin", "sklearn digits 5-9, tiny Swin (demo stand-in)", backbone, clients, test, test,
                tuple(str(d) for d in range(5, 10)))


# --- the registry ----------------------------------------------------------------------------

def _paper_vision(name: str, model: str, dataset: str, label_key: str, test_split: str, image_key: str) -> TaskSpec:
    source = dict(dataset=dataset, model=model, image_key=image_key, label_key=label_key,
                  train_split="train", test_split=test_split, test_examples=10_000)
    profiles = {"colab": COLAB_VISION, "paper": PAPER_VISION} if "swin_tiny" in model else {"paper": PAPER_VISION}
    return TaskSpec(name, f"{model} on {dataset} (paper setting)", _build_hub_images, profiles, source)


def _paper_glue(task: str, text_keys: tuple[str, ...], test_examples: int, test_split: str = "validation") -> TaskSpec:
    source = dict(dataset="nyu-mll/glue", config=task, model="FacebookAI/roberta-base", text_keys=text_keys,
                  train_split="train", test_split=test_split, test_examples=test_examples)
    colab = COLAB_TEXT if len(text_keys) == 1 else dataclasses.replace(COLAB_TEXT, max_length=128)  # sentence pairs
    return TaskSpec(f"{task}-roberta", f"RoBERTa-base on GLUE {task.upper()} (paper setting)", _build_glue,
                    {"colab": colab, "paper": PAPER_TEXT}, source)


TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec(
            "fmnist-swin",
            "Fashion-MNIST 5-9, small Swin pretrained on 0-4 (stand-in for Swin on CIFAR-100)",
            _build_fmnist_swin,
            {
                "smoke": FMNIST_SMOKE,
                "cpu": FMNIST_CPU,
            },
            public_tuning="fmnist-swin-public",
        ),
        TaskSpec(
            "fmnist-swin-public",
            "Fashion-MNIST 0-4 test images (public; the search of fmnist-swin may tune here at no privacy cost)",
            _build_fmnist_public,
            {"smoke": FMNIST_SMOKE_PUBLIC, "cpu": FMNIST_CPU_PUBLIC},
        ),
        TaskSpec(
            "wordnet-minilm",
            "WordNet noun glosses, 8 categories, MiniLM-L6 (stand-in for RoBERTa on GLUE)",
            _build_wordnet_minilm,
            {"smoke": WORDNET_SMOKE, "cpu": WORDNET_CPU},
        ),
        _paper_vision("cifar100-swin-b", "swin_base_patch4_window7_224.ms_in22k", "uoft-cs/cifar100", "fine_label",
                      "test", "img"),
        _paper_vision("tinyimagenet-swin-b", "swin_base_patch4_window7_224.ms_in22k", "zh-plus/tiny-imagenet",
                      "label", "valid", "image"),
        _paper_vision("cifar100-swin-t", "swin_tiny_patch4_window7_224.ms_in1k", "uoft-cs/cifar100", "fine_label",
                      "test", "img"),
        _paper_vision("tinyimagenet-swin-t", "swin_tiny_patch4_window7_224.ms_in1k", "zh-plus/tiny-imagenet",
                      "label", "valid", "image"),
        _paper_glue("sst2", ("sentence",), 872),
        _paper_glue("qnli", ("question", "sentence"), 5_463),
        _paper_glue("qqp", ("question1", "question2"), 40_430),
        _paper_glue("mnli", ("premise", "hypothesis"), 9_815, test_split="validation_matched"),
    )
}


def get_task(name: str) -> TaskSpec:
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; allowed: {', '.join(TASKS)}") from None


def get_profile(task: str, profile: str) -> Profile:
    spec = get_task(task)
    if profile not in spec.profiles:
        raise ValueError(f"task {task!r} has no {profile!r} profile; it has: {', '.join(spec.profiles)}")
    return spec.profiles[profile]


def build_task(name: str, profile: str, seed: int, **source_overrides: object) -> Task:
    """Build task ``name`` at ``profile`` for ``seed``; ``source_overrides`` replace paper-task sources
    (e.g. a local ``dataset`` folder and a tiny ``model_kwargs`` config in the tests)."""
    spec = get_task(name)
    prof = get_profile(name, profile)
    if source_overrides:
        spec = dataclasses.replace(spec, source={**spec.source, **source_overrides})
    return spec.builder(spec, prof, seed)
