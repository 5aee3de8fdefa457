import pytest
import torch
from torch import nn

from lalora_lite.lora import (
    LoRALinear,
    inject_lora,
    linear_layer_names,
    load_lora_state,
    lora_layers,
    lora_state,
    merge_lora,
    parameter_groups,
    set_active,
    trainable_parameters,
)
from lalora_lite.models import forward_logits, tiny_roberta, tiny_swin


def test_swin_injection_targets_attention_and_freezes_backbone():
    backbone = tiny_swin(num_classes=4, img_size=16, patch_size=1)
    names = inject_lora(backbone.model, backbone.targets, rank=4, alpha=8, head=backbone.head)
    assert names and all(n.endswith(("attn.qkv", "attn.proj")) for n in names)
    assert len(names) == 2 * sum((2, 2))  # qkv + proj in each of the 4 blocks
    trainable = {n for n, p in backbone.model.named_parameters() if p.requires_grad}
    groups = parameter_groups(trainable_parameters(backbone.model, backbone.head))
    assert trainable == set(groups["A"]) | set(groups["B"]) | set(groups["head"])
    assert set(groups["head"]) == {"head.fc.weight", "head.fc.bias"}
    for layer in lora_layers(backbone.model).values():
        assert torch.all(layer.lora_B == 0) and layer.lora_A.abs().sum() > 0
        assert layer.scale == 2.0
        assert not layer.base.weight.requires_grad


def test_roberta_targets_query_key_value_and_optional_dense():
    backbone = tiny_roberta(num_labels=3)
    names = inject_lora(backbone.model, (*backbone.targets, "attention.output.dense"), 4, 8, head=backbone.head)
    assert {n.rsplit(".", 1)[1] for n in names} == {"query", "key", "value", "dense"}
    assert not any(n.startswith("classifier") for n in names)  # the head's own dense layer stays a head
    assert len(names) == 4 * 2


def test_unmatched_target_lists_existing_linear_layers():
    backbone = tiny_swin(num_classes=4, img_size=16, patch_size=1)
    with pytest.raises(ValueError, match=r"'attn\.qkvv' matches no Linear layer.*layers\.0\.blocks\.0\.attn\.qkv"):
        inject_lora(backbone.model, ["attn.qkvv"], rank=4, alpha=8, head=backbone.head)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"rank": 0}, "rank"),
        ({"rank": 2.5}, "rank"),
        ({"alpha": 0}, "alpha"),
        ({"dropout": 1.0}, "dropout"),
    ],
)
def test_bad_lora_hyperparameters(kwargs, message):
    backbone = tiny_swin(num_classes=4, img_size=16, patch_size=1)
    args = {"rank": 4, "alpha": 8.0, **kwargs}
    with pytest.raises(ValueError, match=message):
        inject_lora(backbone.model, backbone.targets, head=backbone.head, **args)


def test_forward_equals_w0_plus_sBA():
    torch.manual_seed(0)
    base = nn.Linear(6, 5)
    layer = LoRALinear(base, rank=2, alpha=4)
    with torch.no_grad():
        layer.lora_B.normal_()
    x = torch.randn(3, 6)
    expected = x @ (base.weight + 2.0 * layer.lora_B @ layer.lora_A).T + base.bias
    torch.testing.assert_close(layer(x), expected)


def test_merge_matches_adapted_model_and_peft(swin, image_batch):
    peft = pytest.importorskip("peft")
    model = swin.model.eval()
    before = forward_logits(model, image_batch)
    layer = lora_layers(model)["layers.0.blocks.0.attn.qkv"]
    A, B, W0 = layer.lora_A.detach().clone(), layer.lora_B.detach().clone(), layer.base.weight.detach().clone()

    # peft's merge of the same factors (independent implementation of W0 + (alpha/r) B A)
    ref = nn.Sequential()
    ref.add_module("qkv", nn.Linear(W0.shape[1], W0.shape[0]))
    with torch.no_grad():
        ref.qkv.weight.copy_(W0)
    ref = peft.get_peft_model(ref, peft.LoraConfig(r=4, lora_alpha=8, target_modules=["qkv"]))
    with torch.no_grad():
        ref.base_model.model.qkv.lora_A["default"].weight.copy_(A)
        ref.base_model.model.qkv.lora_B["default"].weight.copy_(B)
    peft_weight = ref.merge_and_unload().qkv.weight

    merge_lora(model)
    assert not lora_layers(model)
    torch.testing.assert_close(forward_logits(model, image_batch), before, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model.get_submodule("layers.0.blocks.0.attn.qkv").weight, peft_weight)


def test_state_roundtrip_and_set_active(swin):
    params = trainable_parameters(swin.model, swin.head)
    state = lora_state(swin.model, swin.head)
    assert set(state) == set(params)
    with torch.no_grad():
        for p in params.values():
            p.add_(1.0)
    load_lora_state(swin.model, state)
    for n, p in params.items():
        torch.testing.assert_close(p.detach(), state[n])
    active = set_active(params, {"B"})
    assert active and all(n.endswith("lora_B") or n.startswith("head") for n in active)
    assert all(not p.requires_grad for n, p in params.items() if n.endswith("lora_A"))
    with pytest.raises(ValueError, match="unknown LoRA factor"):
        set_active(params, {"C"})
    with pytest.raises(KeyError, match="lacks"):
        load_lora_state(swin.model, {"nope": torch.zeros(1)})


def test_linear_layer_names_lists_heads():
    backbone = tiny_swin(num_classes=4, img_size=16, patch_size=1)
    assert "head.fc" in linear_layer_names(backbone.model)
