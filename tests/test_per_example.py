"""Per-example gradients against an independent reference: torch.func on a clean copy."""

import copy

import pytest
import torch
from torch.func import functional_call, grad

from lalora_lite.lora import set_active, trainable_parameters
from lalora_lite.per_example import fold_rows, per_example_gradients
from lalora_lite.training import summed_loss


def reference_per_example(model, batch, active):
    """One torch.func gradient per example, on a deep copy with no hooks."""
    clean = copy.deepcopy(model)
    params = {n: p.detach() for n, p in clean.named_parameters() if n in active}

    def loss(p, one):
        return summed_loss(lambda *a, **kw: functional_call(clean, p, a, kw), one)

    b = batch["labels"].shape[0]
    per = [grad(loss)(params, {k: v[i : i + 1] for k, v in batch.items()}) for i in range(b)]
    return {n: torch.stack([g[n] for g in per]) for n in active}


BATCHES = {"swin": "image_batch", "roberta": "text_batch", "top_bert": "prefix_batch"}


@pytest.mark.parametrize("family", list(BATCHES))
@pytest.mark.parametrize("factors", [{"A"}, {"B"}, {"A", "B"}])
def test_matches_torch_func_reference(request, family, factors):
    backbone = request.getfixturevalue(family)
    batch = request.getfixturevalue(BATCHES[family])
    model = backbone.model.eval()
    params = trainable_parameters(model, backbone.head)
    active = set_active(params, factors)
    ours = per_example_gradients(model, lambda: summed_loss(model, batch), batch["labels"].shape[0])
    ref = reference_per_example(model, batch, active)
    assert set(ours) == set(active)
    for name in active:
        assert ours[name].shape == (6, *params[name].shape), name  # one gradient per example, not per window
        torch.testing.assert_close(ours[name], ref[name], atol=1e-5, rtol=1e-4, msg=name)
    # the factor that is not active gets no gradient at all
    inactive = {"A", "B"} - factors
    assert not any(n.endswith(tuple(f"lora_{f}" for f in inactive)) for n in ours)


def test_windows_are_folded_into_images(swin, image_batch):
    """Without folding, Swin's first stage would yield one gradient per window (here 4 per image)."""
    model = swin.model.eval()
    layer = model.get_submodule("layers.0.blocks.0.attn.qkv")
    rows = []
    hook = layer.register_forward_hook(lambda m, i, o: rows.append(i[0].shape[0]))
    params = trainable_parameters(model, swin.head)
    set_active(params, {"B"})
    grads = per_example_gradients(model, lambda: summed_loss(model, image_batch), 6)
    hook.remove()
    assert rows[0] == 6 * 16  # 16x16 tokens, 4x4 windows -> 16 windows per image
    assert grads["layers.0.blocks.0.attn.qkv.lora_B"].shape[0] == 6


def test_fold_rows():
    """The rows of one example (contiguous) join its token axis: (R, T, f) -> (b, R/b * T, f)."""
    per_row = torch.arange(24.0).reshape(6, 2, 2)  # 6 rows (2 per example), 2 tokens, 2 features
    folded = fold_rows(per_row, 3)
    assert folded.shape == (3, 4, 2)
    torch.testing.assert_close(folded[1], torch.tensor([[8.0, 9.0], [10.0, 11.0], [12.0, 13.0], [14.0, 15.0]]))
    assert fold_rows(torch.zeros(3, 5), 3).shape == (3, 1, 5)  # a pooled head input: one token per example
    with pytest.raises(RuntimeError, match="cannot attribute"):
        fold_rows(per_row, 4)


def test_unsupported_trainable_module_is_an_error(swin, image_batch):
    model = swin.model
    model.norm.weight.requires_grad_(True)  # a LayerNorm has no per-example rule here
    with pytest.raises(TypeError, match="norm .*LayerNorm"):
        per_example_gradients(model, lambda: summed_loss(model, image_batch), 6)


def test_the_loop_reference_agrees_with_the_vectorised_engine(swin, image_batch):
    """per_example_by_loop is what notebooks 05/06 check the real backbones against."""
    from lalora_lite.per_example import per_example_by_loop

    model = swin.model
    fast = per_example_gradients(model, lambda: summed_loss(model, image_batch), 6)
    slow = per_example_by_loop(
        model, 6, lambda i: summed_loss(model, {k: v[i : i + 1] for k, v in image_batch.items()})
    )
    assert set(fast) == set(slow)
    for name in fast:
        torch.testing.assert_close(fast[name], slow[name], rtol=1e-4, atol=1e-6)


def test_real_swin_t_at_224_px_gives_one_gradient_per_image():
    """The paper's Swin-T architecture (timm, random weights, window 7 at 224 px: 64 windows per image in
    stage 1) against one backward pass per image. Eval mode: timm's Swin-T trains with stochastic depth
    (drop path 0.1, a random mask per image), which the two computations would draw differently."""
    from lalora_lite.lora import inject_lora, trainable_parameters
    from lalora_lite.models import timm_swin
    from lalora_lite.per_example import per_example_by_loop

    torch.manual_seed(0)
    backbone = timm_swin("swin_tiny_patch4_window7_224", num_classes=10, pretrained=False)
    inject_lora(backbone.model, backbone.targets, rank=4, alpha=8, head=backbone.head)
    with torch.no_grad():
        for name, p in trainable_parameters(backbone.model, backbone.head).items():
            if name.endswith("lora_B"):
                p.normal_(0, 0.02)
    model = backbone.model.eval()
    batch = {
        "pixel_values": torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0)),
        "labels": torch.tensor([1, 7]),
    }
    fast = per_example_gradients(model, lambda: summed_loss(model, batch), 2)
    slow = per_example_by_loop(model, 2, lambda i: summed_loss(model, {k: v[i : i + 1] for k, v in batch.items()}))
    assert len(fast) == 50 and {g.shape[0] for g in fast.values()} == {2}  # 24 LoRA layers x (A, B) + head
    for name in fast:
        torch.testing.assert_close(fast[name], slow[name], rtol=1e-4, atol=1e-6)
