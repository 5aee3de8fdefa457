"""Datasets as dicts of tensors, and the non-IID Dirichlet split across clients.

A dataset here is ``dict[str, Tensor]`` whose tensors share their first dimension
(examples): ``{"pixel_values": (N, C, H, W), "labels": (N,)}`` for images,
``{"input_ids": (N, L), "attention_mask": (N, L), "labels": (N,)}`` for text
(``{"hidden_states": (N, L, d), ...}`` when frozen bottom layers are cached: :mod:`.prefix`).
"""

from __future__ import annotations

import numpy as np
import torch

Dataset = dict[str, torch.Tensor]


def dataset_size(data: Dataset) -> int:
    sizes = {k: v.shape[0] for k, v in data.items()}
    if "labels" not in data or len(set(sizes.values())) != 1:
        raise ValueError(f"a dataset needs a 'labels' tensor and equal first dimensions, got {sizes}")
    return sizes["labels"]


def subset(data: Dataset, indices: torch.Tensor) -> Dataset:
    return {k: v[indices] for k, v in data.items()}


def to_device(data: Dataset, device: torch.device) -> Dataset:
    return {k: v.to(device, non_blocking=True) for k, v in data.items()}


def dirichlet_partition(
    labels: np.ndarray | torch.Tensor,
    num_clients: int,
    alpha: float,
    seed: int,
    min_size: int = 1,
    max_tries: int = 1000,
) -> list[np.ndarray]:
    """Split example indices across clients with label proportions ~ Dirichlet(alpha).

    For each class, its examples are shuffled and cut into ``num_clients`` pieces with
    proportions drawn from ``Dirichlet(alpha * 1)``; smaller ``alpha`` is more skewed.
    Every example lands in exactly one client. Draws are repeated (same seed stream)
    until every client holds at least ``min_size`` examples.
    """
    labels = np.asarray(labels)
    if num_clients < 1:
        raise ValueError(f"num_clients must be >= 1, got {num_clients}")
    if alpha <= 0:
        raise ValueError(f"Dirichlet alpha must be > 0, got {alpha}")
    if num_clients * min_size > len(labels):
        raise ValueError(f"{len(labels)} examples cannot give {num_clients} clients {min_size} each")
    rng = np.random.default_rng(seed)
    for _ in range(max_tries):
        parts: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
        for c in np.unique(labels):
            idx = rng.permutation(np.flatnonzero(labels == c))
            cuts = (np.cumsum(rng.dirichlet(np.full(num_clients, alpha)))[:-1] * len(idx)).astype(int)
            for client, piece in enumerate(np.split(idx, cuts)):
                parts[client].append(piece)
        clients = [np.sort(np.concatenate(p)) for p in parts]
        if min(len(c) for c in clients) >= min_size:
            return clients
    raise ValueError(
        f"no Dirichlet({alpha}) split gave every one of {num_clients} clients {min_size} examples "
        f"in {max_tries} tries; use fewer clients, a larger alpha or a smaller min_size"
    )


def label_histogram(labels: np.ndarray | torch.Tensor, parts: list[np.ndarray], num_classes: int) -> np.ndarray:
    """``(clients, classes)`` counts, to report how non-IID a split is."""
    labels = np.asarray(labels)
    return np.stack([np.bincount(labels[p], minlength=num_classes) for p in parts])
