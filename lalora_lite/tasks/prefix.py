"""Frozen bottom layers computed once: LoRA on the top layers of a BERT-style classifier.

Every private step runs a forward and a backward pass through every layer of the model, although
with LoRA only in the top layers the bottom ones are a fixed function of the input. With
``frozen_layers = F`` the embeddings and the first ``F`` transformer layers run once over every
example (evaluation mode: no dropout) and a dataset holds their output instead of token ids:

    {"input_ids": (n, T), "attention_mask": (n, T), "labels": (n,)}
      -> {"hidden_states": (n, T, d), "attention_mask": (n, T), "labels": (n,)}

The model becomes :class:`TopEncoder` (layers ``F..L-1``, pooler, dropout, classifier), which
takes those two tensors and returns logits ``(b, classes)``. Nothing else changes: LoRA is
injected into the top layers as before, and each example is still one row of every layer, so
per-example gradients and clipping are per example. The cache is exact (float32, the model's own
computation) for a model whose frozen layers run without dropout; the stand-in's frozen layers
therefore run without dropout in training too. Memory: ``n T d`` floats (20,000 glosses of 32
tokens at d = 384: 0.98 GB).
"""

from __future__ import annotations

import torch
from torch import nn

from ..data import Dataset


def bidirectional_mask(config: object, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor | None:
    """The encoder's attention mask for ``hidden: (b, T, d)`` and a 0/1 ``attention_mask: (b, T)``,
    in the form the model's attention implementation expects (transformers' own helper)."""
    from transformers.masking_utils import create_bidirectional_mask

    return create_bidirectional_mask(config=config, inputs_embeds=hidden, attention_mask=attention_mask)


def _check_frozen_layers(model: nn.Module, frozen_layers: int) -> None:
    layers = len(model.base_model.encoder.layer)
    if not 0 < frozen_layers < layers:
        raise ValueError(f"frozen_layers must be in [1, {layers - 1}] for this model, got {frozen_layers}")
    if getattr(model.base_model, "pooler", None) is None or not hasattr(model, "classifier"):
        raise ValueError(
            f"{type(model).__name__} is not a BERT-style classifier with a pooler; "
            "frozen layers are supported for BertForSequenceClassification-like models"
        )


class TopEncoder(nn.Module):
    """Layers ``F..`` of a ``*ForSequenceClassification`` BERT model, its pooler and classifier.

    ``forward(hidden_states: (b, T, d), attention_mask: (b, T)) -> logits (b, classes)``; the
    modules are the original ones (shared, not copied).
    """

    def __init__(self, model: nn.Module, frozen_layers: int) -> None:
        super().__init__()
        _check_frozen_layers(model, frozen_layers)
        encoder = model.base_model
        self.config = model.config
        self.layers = nn.ModuleList(encoder.encoder.layer[frozen_layers:])
        self.pooler = encoder.pooler
        self.dropout = model.dropout
        self.classifier = model.classifier

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        x = hidden_states
        mask = bidirectional_mask(self.config, x, attention_mask)
        for layer in self.layers:
            x = layer(x, attention_mask=mask)
        return self.classifier(self.dropout(self.pooler(x)))


@torch.no_grad()
def encode_prefix(model: nn.Module, data: Dataset, frozen_layers: int, batch_size: int = 512) -> Dataset:
    """``data`` with token ids replaced by the output of the embeddings and the first
    ``frozen_layers`` layers of ``model`` (evaluation mode: no dropout)."""
    _check_frozen_layers(model, frozen_layers)
    encoder = model.base_model
    was_training = model.training
    model.eval()
    chunks = []
    try:
        for start in range(0, len(data["labels"]), batch_size):
            ids = data["input_ids"][start : start + batch_size]
            mask = data["attention_mask"][start : start + batch_size]
            types = data.get("token_type_ids")
            x = encoder.embeddings(
                input_ids=ids, token_type_ids=None if types is None else types[start : start + batch_size]
            )
            full_mask = bidirectional_mask(model.config, x, mask)
            for layer in encoder.encoder.layer[:frozen_layers]:
                x = layer(x, attention_mask=full_mask)
            chunks.append(x)
    finally:
        model.train(was_training)
    return {"hidden_states": torch.cat(chunks), "attention_mask": data["attention_mask"], "labels": data["labels"]}
