"""The tasks by name: each a LoRA-adapted backbone, private clients (Dirichlet split), validation and test sets.

Offline stand-ins (profiles ``smoke`` and ``cpu``), labelled as such in every figure:

* ``fmnist-swin``: a small timm Swin pretrained *non-privately* on the public
  Fashion-MNIST classes 0-4, then fine-tuned with DP federated LoRA on classes 5-9.
* ``wordnet-minilm``: the pretrained MiniLM-L6 classifying WordNet noun glosses into
  their 8 most frequent lexicographer categories.
* ``digits-swin``: sklearn's digits, for the quick demo and the tests.

A GPU stand-in that downloads nothing but Fashion-MNIST (profile ``gpu``):

* ``fmnist-swin-wide``: the data of ``fmnist-swin`` on a Swin of Swin-B's widths, pretrained by the
  project on the public classes (:mod:`.fmnist_wide`).

Paper tasks (profile ``paper``, GPU + internet): Swin-T/B on CIFAR-100 or
Tiny-ImageNet at 224 px, RoBERTa-base on GLUE.
"""

from __future__ import annotations

import dataclasses

from .common import Task, TaskSpec
from .fmnist import build_fmnist_public, build_fmnist_swin
from .fmnist_wide import build_fmnist_swin_wide
from .hub import build_glue, build_hub_images
from .profiles import (
    COLAB_TEXT,
    COLAB_VISION,
    FMNIST_CPU,
    FMNIST_CPU_PUBLIC,
    FMNIST_SMOKE,
    FMNIST_SMOKE_PUBLIC,
    FMNIST_WIDE_GPU,
    FMNIST_WIDE_SMOKE,
    PAPER_TEXT,
    PAPER_VISION,
    WORDNET_CPU,
    WORDNET_SMOKE,
    Profile,
)
from .wordnet import build_wordnet_minilm


def _paper_vision(name: str, model: str, dataset: str, label_key: str, test_split: str, image_key: str) -> TaskSpec:
    source = dict(
        dataset=dataset,
        model=model,
        image_key=image_key,
        label_key=label_key,
        train_split="train",
        test_split=test_split,
        test_examples=10_000,
    )
    profiles = {"colab": COLAB_VISION, "paper": PAPER_VISION} if "swin_tiny" in model else {"paper": PAPER_VISION}
    return TaskSpec(name, f"{model} on {dataset} (paper setting)", build_hub_images, profiles, source)


def _paper_glue(task: str, text_keys: tuple[str, ...], test_examples: int, test_split: str = "validation") -> TaskSpec:
    source = dict(
        dataset="nyu-mll/glue",
        config=task,
        model="FacebookAI/roberta-base",
        text_keys=text_keys,
        train_split="train",
        test_split=test_split,
        test_examples=test_examples,
    )
    colab = COLAB_TEXT if len(text_keys) == 1 else dataclasses.replace(COLAB_TEXT, max_length=128)  # sentence pairs
    return TaskSpec(
        f"{task}-roberta",
        f"RoBERTa-base on GLUE {task.upper()} (paper setting)",
        build_glue,
        {"colab": colab, "paper": PAPER_TEXT},
        source,
    )


TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec(
            "fmnist-swin",
            "Fashion-MNIST 5-9, small Swin pretrained on 0-4 (stand-in for Swin on CIFAR-100)",
            build_fmnist_swin,
            {
                "smoke": FMNIST_SMOKE,
                "cpu": FMNIST_CPU,
            },
            public_tuning="fmnist-swin-public",
        ),
        TaskSpec(
            "fmnist-swin-wide",
            "Fashion-MNIST 5-9, Swin of Swin-B's widths (192/384/768) pretrained on 0-4 (GPU stand-in for Swin-B)",
            build_fmnist_swin_wide,
            {"smoke": FMNIST_WIDE_SMOKE, "gpu": FMNIST_WIDE_GPU},
        ),
        TaskSpec(
            "fmnist-swin-public",
            "Fashion-MNIST 0-4 test images (public; the search of fmnist-swin may tune here at no privacy cost)",
            build_fmnist_public,
            {"smoke": FMNIST_SMOKE_PUBLIC, "cpu": FMNIST_CPU_PUBLIC},
        ),
        TaskSpec(
            "wordnet-minilm",
            "WordNet noun glosses, 8 categories, MiniLM-L6 (stand-in for RoBERTa on GLUE)",
            build_wordnet_minilm,
            {"smoke": WORDNET_SMOKE, "cpu": WORDNET_CPU},
        ),
        _paper_vision(
            "cifar100-swin-b", "swin_base_patch4_window7_224.ms_in22k", "uoft-cs/cifar100", "fine_label", "test", "img"
        ),
        _paper_vision(
            "tinyimagenet-swin-b",
            "swin_base_patch4_window7_224.ms_in22k",
            "zh-plus/tiny-imagenet",
            "label",
            "valid",
            "image",
        ),
        _paper_vision(
            "cifar100-swin-t", "swin_tiny_patch4_window7_224.ms_in1k", "uoft-cs/cifar100", "fine_label", "test", "img"
        ),
        _paper_vision(
            "tinyimagenet-swin-t",
            "swin_tiny_patch4_window7_224.ms_in1k",
            "zh-plus/tiny-imagenet",
            "label",
            "valid",
            "image",
        ),
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
