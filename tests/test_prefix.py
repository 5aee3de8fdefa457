"""Frozen bottom layers computed once (lalora_lite.tasks.prefix): same outputs, clear errors, the text task."""

import dataclasses

import pytest
import torch
from conftest import tiny_bert

from lalora_lite.lora import lora_layers
from lalora_lite.models import forward_logits
from lalora_lite.tasks import get_profile, get_task
from lalora_lite.tasks.prefix import TopEncoder, encode_prefix


@pytest.mark.parametrize("frozen", [1, 2])
def test_top_layers_on_cached_prefix_reproduce_the_whole_model(text_batch, frozen):
    model = tiny_bert().eval()
    with torch.no_grad():
        whole = forward_logits(model, text_batch)
        cached = encode_prefix(model, text_batch, frozen)
        top = forward_logits(TopEncoder(model, frozen).eval(), cached)
    assert cached["hidden_states"].shape == (6, 12, 32) and cached["hidden_states"].dtype == torch.float32
    assert torch.equal(cached["labels"], text_batch["labels"]) and "input_ids" not in cached
    torch.testing.assert_close(top, whole, atol=1e-6, rtol=1e-5)  # the same computation, in two parts
    assert model.training is False  # encode_prefix restores the mode it found


def test_encode_prefix_restores_training_mode_and_checks_the_layer_count(text_batch):
    model = tiny_bert().train()
    encode_prefix(model, text_batch, 1)
    assert model.training
    for bad in (0, 3, -1):
        with pytest.raises(ValueError, match=rf"frozen_layers must be in \[1, 2\].*got {bad}"):
            TopEncoder(model, bad)


def test_text_task_with_frozen_layers_trains_lora_only_on_top():
    spec = get_task("wordnet-minilm")
    profile = get_profile("wordnet-minilm", "smoke")
    assert profile.frozen_layers == 4
    task = spec.builder(spec, profile, 0)
    assert isinstance(task.backbone.model, TopEncoder)
    assert all(set(c) == {"hidden_states", "attention_mask", "labels"} for c in task.clients + [task.val, task.test])
    assert task.clients[0]["hidden_states"].shape[1:] == (profile.max_length, 384)
    assert len(lora_layers(task.backbone.model)) == 2 * 3  # query, key, value in layers 5 and 6 of MiniLM-L6
    whole = spec.builder(spec, dataclasses.replace(profile, frozen_layers=0), 0)
    assert len(lora_layers(whole.backbone.model)) == 6 * 3
    with torch.no_grad():  # the same function of the same tokens (LoRA starts at B = 0)
        a = forward_logits(task.backbone.model.eval(), {k: v[:8] for k, v in task.test.items()})
        b = forward_logits(whole.backbone.model.eval(), {k: v[:8] for k, v in whole.test.items()})
    torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_text_head_is_drawn_from_the_run_seed_not_from_the_global_generator():
    spec, profile = get_task("wordnet-minilm"), get_profile("wordnet-minilm", "smoke")
    torch.manual_seed(123)
    first = spec.builder(spec, profile, 0).backbone.model.classifier.weight.detach().clone()
    torch.randn(1000)  # whatever ran before (another task build, another run) must not matter
    again = spec.builder(spec, profile, 0).backbone.model.classifier.weight
    other = spec.builder(spec, profile, 1).backbone.model.classifier.weight
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert 0.01 < first.std().item() < 0.03  # the model's initializer_range, 0.02
