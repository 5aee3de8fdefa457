"""Profiles: one experiment, three sizes.

``smoke``  seconds; what CI runs (tiny data, two rounds).
``cpu``    the default: minutes to hours on a 2-core laptop, big enough to show the effect.
``colab``  the paper's tasks on subsets, Swin-T and RoBERTa-base in fp16: about an hour per
           method and budget on a free Colab T4 (:mod:`lalora_lite.study.estimate`); GPU + internet.
``paper``  the paper's models, data and rounds; needs a GPU and the internet.

Every task has a :class:`Profile` per size it supports. The profile is chosen by
``--profile`` or the ``LALORA_PROFILE`` environment variable (default ``cpu``).
"""

from __future__ import annotations

import os
from dataclasses import MISSING, dataclass, fields, replace

from ..methods import METHODS

PROFILES = ("smoke", "cpu", "colab", "paper", "gpu")
# The methods a comparison runs unless its profile says otherwise: the paper's and the two ablations.
# The head-only control (dp-head) and the explanation study's two (lalora-authors, lalora-nodp) are run
# where a study asks for them (they are not the paper's methods).
STUDY_METHODS = ("dp-head", "lalora-authors", "lalora-nodp")
ALL_METHODS = tuple(m for m in METHODS if m not in STUDY_METHODS)


def current_profile(name: str | None = None, allowed: tuple[str, ...] = PROFILES) -> str:
    """The profile asked for, else ``$LALORA_PROFILE``, else ``cpu``; a name outside ``allowed`` raises
    (a notebook that has no paper-scale setting passes ``allowed=("smoke", "cpu")``)."""
    profile = name or os.environ.get("LALORA_PROFILE", "cpu")
    if profile not in allowed:
        raise ValueError(f"profile {profile!r} is not offered here; allowed: {', '.join(allowed)}")
    return profile


@dataclass(frozen=True)
class Profile:
    """Data sizes, federation, training and the comparison grid of one task at one size."""

    # data
    train_size: int  # private training examples, split across clients
    val_size: int  # held out from the private training pool, for the hyper-parameter search
    test_size: int | None  # None: the whole test split
    # federation
    num_clients: int
    clients_per_round: int
    dirichlet_alpha: float
    min_client_size: int
    # local training
    rounds: int
    local_steps: int
    batch_size: int
    optimizer: str
    rank: int
    lora_alpha: float
    # the comparison (every method gets the same search at every budget: lalora_lite.study.search)
    lr_grid: tuple[float, ...]  # log-spaced starting grids, widened while the best point is on an edge
    clip_grid: tuple[float, ...]
    search_rounds: int  # rounds of each search run (validation split, the first seed)
    epsilons: tuple[float, ...]
    seeds: tuple[int, ...]
    methods: tuple[str, ...] = ALL_METHODS
    max_widen: int = 2  # extra log-steps the search may add on each side of each grid axis
    count_steps: str = "every-round"  # what a client's noise is calibrated for (federated.steps_per_client)
    lr_schedule: str = "constant"  # over rounds (federated.round_lr)
    eval_every: int = 1  # evaluate the global model every n rounds (and after the last)
    # task-specific
    pretrain_steps: int = 0  # vision stand-in: non-private public pretraining
    max_length: int = 32  # text: tokens per example
    frozen_layers: int = 0  # text: bottom layers without LoRA, computed once per example (lalora_lite.tasks.prefix)
    delta: float = 1e-5
    precision: str = "fp32"  # the forward pass: fp32, bf16 or fp16 (lalora_lite.precision)
    swin_arch: str = ""  # the wide vision stand-in: its Swin's size (lalora_lite.tasks.fmnist_wide.ARCHS)


def default_settings() -> dict[str, object]:
    """Every :class:`Profile` setting that has a declared default, with that default."""
    return {f.name: f.default for f in fields(Profile) if f.default is not MISSING}


# The paper's federation shapes, kept by every profile of a task family.
VISION_FEDERATION = dict(num_clients=8, clients_per_round=4, dirichlet_alpha=0.1)
TEXT_FEDERATION = dict(num_clients=20, clients_per_round=4, dirichlet_alpha=0.8)
PAPER_METHODS = ("fedlora", "dp-lora", "ffa-lora", "rolora", "lalora")

# The offline stand-ins (smoke, cpu): see lalora_lite.tasks for what they stand in for.
_VISION = dict(**VISION_FEDERATION, optimizer="sgd")
_TEXT_CPU = dict(
    **TEXT_FEDERATION, optimizer="sgd"
)  # the stand-in: SGD with a cosine schedule learns where AdamW did not
_SMOKE = dict(
    rounds=2,
    local_steps=2,
    batch_size=16,
    lr_grid=(0.1,),
    clip_grid=(1.0,),
    search_rounds=1,
    epsilons=(3.0,),
    seeds=(0,),
)

FMNIST_SMOKE = Profile(
    train_size=800,
    val_size=200,
    test_size=300,
    min_client_size=20,
    rank=8,
    lora_alpha=16,
    pretrain_steps=30,
    **_VISION,
    **_SMOKE,
)
# 80 rounds of 5 local steps: the same steps and noise as 40 x 10, less client drift (README "Why this shape")
FMNIST_CPU = Profile(
    train_size=8_000,
    val_size=1_000,
    test_size=2_000,
    min_client_size=100,
    rounds=80,
    local_steps=5,
    batch_size=32,
    rank=8,
    lora_alpha=16,
    lr_grid=(0.1, 0.2, 0.4),
    clip_grid=(0.5, 1.0, 2.0),
    search_rounds=80,
    epsilons=(1.0, 2.0, 3.0),
    seeds=(0, 1, 2, 3, 4),
    pretrain_steps=1500,
    count_steps="expected",
    lr_schedule="cosine",
    eval_every=10,
    **_VISION,
)
# the public pool has 5,000 images: 1,000 validation (as the private search) and 4,000 for the clients
FMNIST_SMOKE_PUBLIC = replace(FMNIST_SMOKE, test_size=None)
# fmnist-swin-wide (a GPU, nothing downloaded but Fashion-MNIST): the small stand-in's data and federation on a
# Swin of Swin-B's widths, at the paper's LoRA shape (r = 16, alpha = 16, 20 local steps), with the head-only
# control; an fp16 forward pass, so that a Colab T4 runs it (bf16 needs an A100 or newer). Its cost is not
# measured yet (no GPU run of it so far).
WIDE_METHODS = ("dp-head", "dp-lora", "ffa-lora", "lalora")
FMNIST_WIDE_SMOKE = Profile(
    train_size=800,
    val_size=200,
    test_size=300,
    min_client_size=20,
    rank=16,
    lora_alpha=16,
    pretrain_steps=5,
    methods=WIDE_METHODS,
    swin_arch="tiny",  # seconds on a CPU; the gpu profile's Swin would take minutes per step there
    **_VISION,
    **_SMOKE,
)
FMNIST_WIDE_GPU = Profile(
    train_size=20_000,
    val_size=2_000,
    test_size=None,
    min_client_size=200,
    rounds=40,
    local_steps=20,
    batch_size=32,
    rank=16,
    lora_alpha=16,
    lr_grid=(0.05, 0.1, 0.2),
    clip_grid=(0.5, 1.0, 2.0),
    search_rounds=20,
    epsilons=(1.0, 3.0),
    seeds=(0, 1, 2),
    methods=WIDE_METHODS,
    pretrain_steps=2_000,
    count_steps="expected",
    lr_schedule="cosine",
    eval_every=5,
    precision="fp16",
    swin_arch="wide",
    **_VISION,
)
FMNIST_CPU_PUBLIC = replace(FMNIST_CPU, train_size=4_000, min_client_size=50, test_size=None)
WORDNET_SMOKE = Profile(
    train_size=400,
    val_size=50,
    test_size=100,
    min_client_size=5,
    rank=8,
    lora_alpha=16,
    max_length=32,
    frozen_layers=4,
    **_TEXT_CPU,
    **{**_SMOKE, "lr_grid": (0.3,)},
)
WORDNET_CPU = Profile(
    train_size=20_000,
    val_size=1_000,
    test_size=1_000,
    min_client_size=50,
    rounds=30,
    local_steps=10,
    batch_size=32,
    rank=8,
    lora_alpha=16,
    lr_grid=(0.15, 0.3, 0.6),
    clip_grid=(0.5, 1.0, 2.0),
    search_rounds=30,
    epsilons=(1.0, 2.0, 3.0),
    seeds=(0, 1, 2, 3, 4),
    methods=PAPER_METHODS,
    count_steps="expected",
    lr_schedule="cosine",
    eval_every=5,
    max_length=32,
    frozen_layers=4,
    **_TEXT_CPU,
)

PAPER_VISION = Profile(
    train_size=45_000,
    val_size=5_000,
    test_size=None,
    min_client_size=50,
    rounds=100,
    local_steps=20,
    batch_size=16,
    optimizer="sgd",
    rank=16,
    lora_alpha=16,
    lr_grid=(0.01, 0.05),
    clip_grid=(0.5, 1.0),
    search_rounds=20,
    epsilons=(1.0, 2.0, 3.0),
    seeds=(0, 1, 2),
    **VISION_FEDERATION,
)
PAPER_TEXT = Profile(
    train_size=50_000,
    val_size=5_000,
    test_size=None,
    min_client_size=50,
    rounds=100,
    local_steps=20,
    batch_size=16,
    optimizer="adamw",
    rank=8,
    lora_alpha=16,
    lr_grid=(5e-4, 2e-3),
    clip_grid=(0.5, 1.0),
    search_rounds=20,
    epsilons=(1.0, 2.0, 3.0),
    seeds=(0, 1, 2),
    max_length=128,
    **TEXT_FEDERATION,
)
# colab: the cpu stand-ins' protocol (expected step counting, cosine lr, a 3 x 3 grid searched at
# every budget for the full run length) on subsets, with the forward pass in fp16 (a T4 has no fast bf16).
_COLAB = dict(
    min_client_size=50,
    rounds=30,
    local_steps=10,
    batch_size=16,
    clip_grid=(0.5, 1.0, 2.0),
    search_rounds=30,
    epsilons=(1.0, 2.0, 3.0),
    seeds=(0, 1, 2),
    methods=PAPER_METHODS,
    count_steps="expected",
    lr_schedule="cosine",
    eval_every=5,
    precision="fp16",
)
COLAB_VISION = Profile(
    train_size=10_000,
    val_size=1_000,
    test_size=2_000,
    optimizer="sgd",
    rank=16,
    lora_alpha=16,
    lr_grid=(0.01, 0.02, 0.04),
    **_COLAB,
    **VISION_FEDERATION,
)
COLAB_TEXT = Profile(
    train_size=10_000,
    val_size=1_000,
    test_size=None,
    optimizer="adamw",
    rank=8,
    lora_alpha=16,
    lr_grid=(5e-4, 1e-3, 2e-3),
    max_length=64,
    **_COLAB,
    **TEXT_FEDERATION,
)
