"""Profiles: one experiment, three sizes.

``smoke``  seconds; what CI runs (tiny data, two rounds).
``cpu``    the default: minutes on a 2-core laptop, big enough to show the effect.
``paper``  the paper's models, data and rounds; needs a GPU and the internet.

Every task has a :class:`Profile` per size it supports. The profile is chosen by
``--profile`` or the ``LALORA_PROFILE`` environment variable (default ``cpu``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .methods import METHODS

PROFILES = ("smoke", "cpu", "paper")
ALL_METHODS = tuple(METHODS)


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
    # the comparison (every method gets the same search at every budget: lalora_lite.search)
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
    frozen_layers: int = 0  # text: bottom layers without LoRA, computed once per example (lalora_lite.prefix)
    delta: float = 1e-5
