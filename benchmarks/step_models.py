"""The models and batches that ``dp_step.py`` times: one frozen backbone per (model, size) with LoRA.

Sizes: ``tiny`` (CPU correctness: a 2-stage timm Swin at 32 px, window 4, and a 2-layer RoBERTa,
rank 4), ``small`` (CPU timing: a 12M-parameter 3-stage Swin at 32 px and MiniLM-L6 at sequence
length 64, rank 8), ``paper`` (GPU timing: Swin-B at 224 px with LoRA r=16 on attn.qkv/attn.proj,
RoBERTa-base at length 128 with LoRA r=8 on query/key/value; random init, no download).
A batch is ``pixel_values`` ``(b, 3, s, s)`` or ``input_ids``/``attention_mask`` ``(b, seq)`` with
real padding, plus ``labels`` ``(b,)``.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lalora_lite.lora import inject_lora, trainable_parameters  # noqa: E402

MODELS = ("swin", "roberta")
SIZES = ("tiny", "small", "paper")
NUM_CLASSES = {"swin": 100, "roberta": 2}


@dataclass
class Spec:
    """What one (model, size) benchmark builds."""

    model: str
    size: str
    rank: int
    targets: tuple[str, ...]
    head: tuple[str, ...]
    image_size: int = 0  # vision
    seq_len: int = 0  # text


def spec_for(model: str, size: str) -> Spec:
    if model == "swin":
        rank, image = {"tiny": (4, 32), "small": (8, 32), "paper": (16, 224)}[size]
        return Spec(model, size, rank, ("attn.qkv", "attn.proj"), ("head",), image_size=image)
    rank, seq = {"tiny": (4, 16), "small": (8, 64), "paper": (8, 128)}[size]
    return Spec(model, size, rank, ("query", "key", "value"), ("classifier",), seq_len=seq)


def backbone(spec: Spec) -> torch.nn.Module:
    """The frozen backbone (random init except MiniLM, which ships with its package)."""
    torch.manual_seed(0)
    if spec.model == "swin":
        from timm.models.swin_transformer import SwinTransformer

        if spec.size == "paper":
            import timm

            return timm.create_model("swin_base_patch4_window7_224", pretrained=False, num_classes=100)
        dims = (
            dict(embed_dim=32, depths=(2, 2), num_heads=(2, 4))
            if spec.size == "tiny"
            else dict(embed_dim=96, depths=(2, 2, 6), num_heads=(3, 6, 12))
        )
        return SwinTransformer(img_size=32, patch_size=2, window_size=4, in_chans=3, num_classes=100, **dims)
    if spec.size == "small":
        from lalora_lite.models import minilm

        return minilm(2).model
    from transformers import RobertaConfig, RobertaForSequenceClassification

    if spec.size == "paper":
        return RobertaForSequenceClassification(RobertaConfig(num_labels=2))  # roberta-base's dimensions
    config = RobertaConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=2,
    )
    return RobertaForSequenceClassification(config)


def make_batch(spec: Spec, batch: int, device: torch.device) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    labels = torch.randint(0, NUM_CLASSES[spec.model], (batch,), generator=g)
    if spec.model == "swin":
        data = {"pixel_values": torch.randn(batch, 3, spec.image_size, spec.image_size, generator=g)}
    else:
        vocab = 100 if spec.size == "tiny" else 20_000
        ids = torch.randint(3, vocab, (batch, spec.seq_len), generator=g)
        lengths = torch.randint(spec.seq_len // 2, spec.seq_len + 1, (batch,), generator=g)
        mask = (torch.arange(spec.seq_len)[None] < lengths[:, None]).long()  # real padding
        data = {"input_ids": torch.where(mask.bool(), ids, torch.ones_like(ids)), "attention_mask": mask}
    return {k: v.to(device) for k, v in {**data, "labels": labels}.items()}


def ours(spec: Spec, device: torch.device) -> tuple[torch.nn.Module, dict[str, torch.nn.Parameter]]:
    model = backbone(spec)
    inject_lora(model, spec.targets, rank=spec.rank, alpha=2 * spec.rank, head=spec.head)
    model.to(device).train()
    return model, trainable_parameters(model, spec.head)


def with_peft(spec: Spec, device: torch.device) -> torch.nn.Module:
    import peft

    config = peft.LoraConfig(
        r=spec.rank, lora_alpha=2 * spec.rank, target_modules=list(spec.targets), modules_to_save=list(spec.head)
    )
    model = backbone(spec).to(device)  # to the device *before* peft (opacus issue 820)
    return peft.get_peft_model(model, config).train()
