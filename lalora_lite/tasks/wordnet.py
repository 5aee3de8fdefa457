"""``wordnet-minilm``: the pretrained MiniLM-L6 classifying WordNet noun glosses into their 8 most frequent
lexicographer categories (the stand-in for RoBERTa on GLUE).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from ..data import subset
from ..models import Backbone, minilm, minilm_path
from .common import Task, TaskSpec, adapt, split_pool
from .loaders import NOUN_LEXNAMES, load_wordnet_glosses
from .prefix import TopEncoder, encode_prefix
from .profiles import Profile

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


def build_wordnet_minilm(spec: TaskSpec, profile: Profile, seed: int) -> Task:
    pool, names = _wordnet_tokens(profile.max_length)
    order = torch.from_numpy(np.random.default_rng(0).permutation(len(pool["labels"])))
    test = subset(pool, order[: profile.test_size])  # fixed test set; the rest is the private pool
    clients, val = split_pool(subset(pool, order[profile.test_size :]), profile, seed)
    backbone = minilm(WORDNET_CLASSES)
    if profile.frozen_layers:  # the frozen bottom layers run once over every example (lalora_lite.tasks.prefix)
        layers = profile.frozen_layers
        clients = [encode_prefix(backbone.model, c, layers) for c in clients]
        val, test = encode_prefix(backbone.model, val, layers), encode_prefix(backbone.model, test, layers)
        backbone = Backbone(TopEncoder(backbone.model, layers), backbone.head, backbone.targets)
    return Task(spec.name, spec.description, adapt(backbone, profile, WORDNET_CLASSES, seed), clients, val, test, names)
