"""Mixed precision: the forward pass in bf16/fp16, per-example gradients, clipping and noise in float32."""

import math

import pytest
import torch

from lalora_lite.federated import FederatedConfig, run_federated, validate
from lalora_lite.per_example import per_example_gradients
from lalora_lite.precision import FP16_LOSS_SCALE, check_precision, loss_scale, unscale_per_example
from lalora_lite.tasks import digits_swin
from lalora_lite.training import DPNoise, LocalConfig, evaluate, step_gradient, summed_loss


def relative_errors(ours: dict, reference: dict) -> float:
    """Largest per-example relative error over all tensors."""
    return max(
        ((ours[n] - reference[n]).flatten(1).norm(dim=1) / reference[n].flatten(1).norm(dim=1).clamp_min(1e-12))
        .max()
        .item()
        for n in reference
    )


@pytest.mark.parametrize("precision, tolerance", [("bf16", 0.05), ("fp16", 0.01)])
@pytest.mark.parametrize("model", ["swin", "roberta"])
def test_low_precision_per_example_gradients_are_float32_and_close(precision, tolerance, model, request):
    """One float32 gradient per example (Swin: windows folded back into images) within bf16/fp16 accuracy
    of the float32 computation."""
    backbone = request.getfixturevalue(model)
    batch = request.getfixturevalue("image_batch" if model == "swin" else "text_batch")
    net = backbone.model
    reference = per_example_gradients(net, lambda: summed_loss(net, batch), 6)
    scale = loss_scale(precision)
    ours, dropped = unscale_per_example(
        per_example_gradients(net, lambda: summed_loss(net, batch, precision) * scale, 6), scale
    )
    assert dropped == 0 and set(ours) == set(reference)
    assert all(g.dtype == torch.float32 and g.shape == reference[n].shape for n, g in ours.items())
    assert relative_errors(ours, reference) < tolerance
    assert relative_errors(ours, reference) > 0  # the forward really ran in low precision


def test_an_overflowing_example_contributes_zero_and_the_others_are_unscaled_exactly():
    g = torch.Generator().manual_seed(0)
    grads = {"a": torch.randn(4, 3, 2, generator=g), "b": torch.randn(4, 5, generator=g)}
    grads["b"][2, 1] = math.inf  # example 2 overflowed in one tensor
    grads["a"][3, 0, 0] = math.nan  # example 3 in another
    out, dropped = unscale_per_example({n: t.half() for n, t in grads.items()}, 8.0)
    assert dropped == 2
    for n, t in out.items():
        assert t.dtype == torch.float32
        assert torch.equal(t[2], torch.zeros_like(t[2])) and torch.equal(t[3], torch.zeros_like(t[3]))
        torch.testing.assert_close(t[:2], grads[n][:2].half().float() / 8.0, rtol=0, atol=0)


def test_dp_step_in_fp16_releases_clipped_float32_sums(swin, image_batch):
    """With no noise the release is the mean of clipped per-example gradients: every clipped example has
    norm <= C, so the sum's norm is <= b * C; its dtype is float32 and it matches the float32 step."""
    params = {n: p for n, p in swin.model.named_parameters() if p.requires_grad}
    active = list(params)
    dp = DPNoise(noise_multiplier=0.0, sample_rate=0.5, clip_norm=0.01, expected_batch_size=6.0)
    runs = {}
    for precision in ("fp32", "fp16"):
        noisy, loss = step_gradient(
            swin.model, params, active, image_batch, dp, torch.Generator().manual_seed(0), precision=precision
        )
        assert all(g.dtype == torch.float32 for g in noisy.values()) and math.isfinite(loss)
        norm = torch.sqrt(sum(g.pow(2).sum() for g in noisy.values())) * dp.expected_batch_size
        assert norm <= 6 * dp.clip_norm * (1 + 1e-5)
        runs[precision] = noisy
    assert (
        relative_errors({n: g[None] for n, g in runs["fp16"].items()}, {n: g[None] for n, g in runs["fp32"].items()})
        < 0.01
    )
    assert FP16_LOSS_SCALE > 1


def test_a_federated_run_in_bf16_learns_and_spends_the_same_epsilon():
    histories = {}
    for precision in ("fp32", "bf16"):
        task = digits_swin(num_clients=4)
        untrained = evaluate(task.backbone.model, task.test)[0]
        cfg = FederatedConfig(
            "dp-lora",
            rounds=6,
            clients_per_round=2,
            epsilon=8.0,
            local=LocalConfig(local_steps=5, batch_size=32, lr=0.2, precision=precision),
        )
        histories[precision] = run_federated(task.backbone, task.clients, task.test, cfg, progress=False)
    fp32, bf16 = histories["fp32"].iloc[-1], histories["bf16"].iloc[-1]
    assert bf16["epsilon_spent"] == fp32["epsilon_spent"]  # accounting does not depend on precision
    assert bf16["accuracy"] > untrained + 0.12, (untrained, histories["bf16"]["accuracy"].tolist())
    assert abs(bf16["accuracy"] - fp32["accuracy"]) < 0.1, (fp32["accuracy"], bf16["accuracy"])


def test_unknown_precision_is_an_error_naming_the_allowed_ones():
    with pytest.raises(ValueError, match="unknown precision 'fp8'; allowed: fp32, bf16, fp16"):
        check_precision("fp8")
    cfg = FederatedConfig("lalora", local=LocalConfig(precision="half"), epsilon=1.0)
    with pytest.raises(ValueError, match="unknown precision 'half'; allowed: fp32, bf16, fp16"):
        validate(cfg, 8)
