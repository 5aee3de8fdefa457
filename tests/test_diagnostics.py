"""Diagnostics against cases with known answers."""

import math

import pytest
import torch
from torch import nn

from lalora_lite import diagnostics as dg
from lalora_lite.lora import lora_state, trainable_parameters
from lalora_lite.methods import get_method
from lalora_lite.training import DPNoise, LocalConfig, local_update


def test_coupling_terms_sum_to_the_weight_change():
    g = torch.Generator().manual_seed(0)
    A, B, dA, dB = (torch.randn(s, generator=g) for s in ((3, 7), (5, 3), (3, 7), (5, 3)))
    parts = dg.coupling_terms(A, B, dA, dB, scale=2.0)
    dW = 2.0 * ((B + dB) @ (A + dA) - B @ A)
    torch.testing.assert_close(sum(parts.values()), dW)


@pytest.mark.parametrize("method, cross_is_zero", [("lalora", True), ("dp-lora", False)])
def test_cross_term_vanishes_only_when_one_factor_moves(swin, image_batch, method, cross_is_zero):
    model = swin.model
    params = trainable_parameters(model, swin.head)
    data = {k: v.repeat(4, *[1] * (v.ndim - 1)) for k, v in image_batch.items()}
    norms = []

    def record(k):
        nonlocal before
        after = lora_state(model, swin.head)
        norms.append(dg.coupling_norms(before, after, model))
        before = after

    before = lora_state(model, swin.head)
    dp = DPNoise(1.0, 0.5, 1.0, 12.0)
    local_update(model, params, data, get_method(method), 0, 2, LocalConfig(lr=0.5), dp, torch.Generator(), record)
    assert len(norms) == 2 and all(n["dW"] > 0 for n in norms)
    shares = [n["cross_share"] for n in norms]
    assert all(s == 0.0 for s in shares) if cross_is_zero else all(s > 0 for s in shares)


def test_noise_terms_match_closed_forms_and_scale():
    g = torch.Generator().manual_seed(0)
    A, B = torch.randn(4, 30, generator=g), 0.1 * torch.randn(20, 4, generator=g)
    small = dg.noise_terms(A, B, tau=0.01, scale=2.0, samples=400, generator=g)
    large = dg.noise_terms(A, B, tau=0.1, scale=2.0, samples=400, generator=g)
    for out in (small, large):
        assert out["linear"] == pytest.approx(out["linear_expected"], rel=0.05)
        assert out["quadratic"] == pytest.approx(out["quadratic_expected"], rel=0.05)
    # 10x the noise: the linear term grows 10x, the product term 100x
    assert large["linear_expected"] / small["linear_expected"] == pytest.approx(10.0)
    assert large["quadratic"] / small["quadratic"] == pytest.approx(100.0, rel=0.1)
    assert large["full_expected"] == pytest.approx(0.1 * math.sqrt(20 * 30))


def quadratic(h_diag):
    x = nn.Parameter(torch.ones(len(h_diag)))
    h = torch.tensor(h_diag)
    return x, (lambda: 0.5 * (h * x * x).sum())


def test_top_eigenvalue_and_trace_of_a_known_quadratic():
    x, loss = quadratic([5.0, 2.0, -1.0, 0.5])
    value, converged, history = dg.top_hessian_eigenvalue(
        loss, [x], iters=200, tol=1e-6, generator=torch.Generator().manual_seed(0)
    )
    assert converged and value == pytest.approx(5.0, rel=1e-4) and len(history) < 200
    assert dg.hessian_trace(loss, [x], samples=5, generator=torch.Generator().manual_seed(0)) == pytest.approx(6.5)
    # the dominant eigenvalue is negative here: the shifted pass still finds the largest one, 2
    y, negative = quadratic([-6.0, 2.0, 1.0])
    value, converged, _ = dg.top_hessian_eigenvalue(
        negative, [y], iters=500, tol=1e-7, generator=torch.Generator().manual_seed(0)
    )
    assert converged and value == pytest.approx(2.0, rel=1e-3)
    # a strongly negative dominant eigenvalue over a large flat bulk: power iteration on H + 100 I creeps (100.5
    # against 100) and two successive quotients agree near 0 (what the earlier shifted pass returned, "converged");
    # Lanczos finds the top eigenvalue 0.5
    u, saddle = quadratic([-100.0, 0.5] + [0.0] * 2_000)
    value, converged, history = dg.top_hessian_eigenvalue(
        saddle, [u], iters=40, tol=1e-3, generator=torch.Generator().manual_seed(0)
    )
    assert converged and value == pytest.approx(0.5, rel=1e-3) and len(history) > 10
    # a top eigenvalue 0.001 above a bulk spread over [0, 1]: too close to find within a budget of about 40
    # products, which is reported as not converged, and found with 400
    c, crowded = quadratic([-100.0, 1.001] + torch.linspace(0, 1, 5_000).tolist())
    for budget, expect in ((40, False), (400, True)):
        value, converged, history = dg.top_hessian_eigenvalue(
            crowded, [c], iters=budget, tol=1e-6, generator=torch.Generator().manual_seed(0)
        )
        assert converged is expect and len(history) <= 2 * budget
    assert value == pytest.approx(1.001, rel=1e-5)
    for dims in ([-3.0], [-3.0, 1.5]):  # spaces too small for ARPACK are solved densely
        t, tiny = quadratic(dims)
        assert dg.top_hessian_eigenvalue(tiny, [t], iters=50, tol=1e-6, generator=torch.Generator().manual_seed(0))[
            0
        ] == pytest.approx(max(dims), rel=1e-5)
    z, close_eigenvalues = quadratic([1.0, 0.999])
    _, converged, _ = dg.top_hessian_eigenvalue(close_eigenvalues, [z], iters=2, tol=1e-12)
    assert not converged  # too few iterations is reported, not hidden
    # a big space with one sharp direction: the first two quotients agree within a loose tol far below the top
    w, flat_but_one = quadratic([10.0] + [1.0] * 10_000)
    early, converged_early, _ = dg.top_hessian_eigenvalue(
        flat_but_one, [w], iters=50, tol=0.1, generator=torch.Generator().manual_seed(0), min_iters=2
    )
    assert converged_early and early < 2.0  # what a two-quotient criterion accepts
    value, converged, history = dg.top_hessian_eigenvalue(
        flat_but_one, [w], iters=50, tol=0.1, generator=torch.Generator().manual_seed(0)
    )
    assert converged and len(history) >= 10 and value == pytest.approx(10.0, rel=0.01)


def test_filter_normalised_direction_rows():
    refs = [torch.tensor([[3.0, 4.0], [0.0, 0.0]]), torch.tensor([1.0, 2.0, 2.0])]
    d = dg.filter_normalised_direction(refs, torch.Generator().manual_seed(0))
    torch.testing.assert_close(d[0].norm(dim=1), torch.tensor([5.0, 0.0]))
    torch.testing.assert_close(d[1].norm(), torch.tensor(3.0))


def test_loss_surface_restores_weights_and_centres_on_the_model(swin, image_batch):
    model = swin.model
    loss = dg.loss_function(model, [image_batch])
    weights, refs = dg.landscape_weights(model, swin.head)
    before = [w.detach().clone() for w in weights]
    d1 = dg.filter_normalised_direction(refs, torch.Generator().manual_seed(1))
    d2 = dg.filter_normalised_direction(refs, torch.Generator().manual_seed(2))
    coords = [-0.5, 0.0, 0.5]
    surface = dg.loss_surface(loss, weights, [d1, d2], coords)
    assert surface.shape == (3, 3)
    assert surface[1, 1].item() == pytest.approx(loss().item(), rel=1e-5)
    assert all(torch.equal(w, b) for w, b in zip(weights, before))
    merged_weights, merged_refs = dg.landscape_weights(model, swin.head, merged=True)
    line = dg.loss_surface(loss, merged_weights, [dg.filter_normalised_direction(merged_refs)], coords)
    assert line.shape == (3,) and line[1].item() == pytest.approx(loss().item(), rel=1e-5)


def test_alignment_and_aggregation_gap(swin):
    state = lora_state(swin.model, swin.head)
    assert dg.aggregation_gap([state, state], swin.model) == pytest.approx(0.0, abs=1e-7)
    # clients (A, B) and (-A, 2B): mean(A) = 0, so mean(B) mean(A) = 0 while mean(B A) = -B A / 2: gap 1
    mixed = {k: (-v if k.endswith("lora_A") else 2 * v if k.endswith("lora_B") else v) for k, v in state.items()}
    assert dg.aggregation_gap([state, mixed], swin.model) == pytest.approx(1.0)
    zero = {k: torch.zeros_like(v) for k, v in state.items()}
    deltas = [dg.delta_w(s, zero, swin.model) for s in (state, state)]
    assert dg.pairwise_cosine(deltas) == pytest.approx(1.0)
    assert dg.pairwise_cosine([deltas[0], {k: -v for k, v in deltas[0].items()}]) == pytest.approx(-1.0)


def test_accumulated_noise_matches_its_closed_forms_and_alternation_keeps_a_product_per_round():
    from lalora_lite.diagnostics import accumulated_noise
    from lalora_lite.methods import get_method

    g = torch.Generator().manual_seed(0)
    A, B = torch.randn(4, 12, generator=g), 0.1 * torch.randn(10, 4, generator=g)
    for method in ("dp-lora", "lalora"):
        out = accumulated_noise(
            A, B, 0.05, 2.0, get_method(method).active, local_steps=6, rounds=3, clients=2, samples=4000, generator=g
        )
        assert abs(out["linear"] / out["linear_expected"] - 1) < 0.05
        assert abs(out["product"] / out["product_expected"] - 1) < 0.05
    lalora = accumulated_noise(A, B, 0.05, 2.0, get_method("lalora").active, 6, samples=10, generator=g)
    one_step = accumulated_noise(A, B, 0.05, 2.0, get_method("lalora").active, 1, samples=10, generator=g)
    assert lalora["product"] > 0 and one_step["product"] == 0.0  # per step zero, per round not


def test_merged_space_eigenvalue_ignores_how_the_product_is_split():
    """Rescaling B -> cB, A -> A/c leaves W and the merged-space Hessian unchanged (factor space changes)."""
    from torch import nn

    from lalora_lite.diagnostics import merged_space, top_hessian_eigenvalue
    from lalora_lite.lora import LoRALinear, lora_layers

    torch.manual_seed(0)
    model = nn.Sequential(LoRALinear(nn.Linear(6, 5), rank=2, alpha=4), nn.Tanh(), nn.Linear(5, 3))
    with torch.no_grad():
        model[0].lora_B.normal_()
    x, y = torch.randn(16, 6), torch.randn(16, 3)
    loss = lambda: ((model(x) - y) ** 2).mean()  # noqa: E731

    def eigenvalues():
        factors = [model[0].lora_A, model[0].lora_B]
        factor_eig = top_hessian_eigenvalue(loss, factors, 200, 1e-6, torch.Generator().manual_seed(1))[0]
        with merged_space(model, ("2",)) as params:
            assert len(params) == 3  # W0 of the one adapted layer + the head's weight and bias
            merged_eig = top_hessian_eigenvalue(loss, params, 200, 1e-6, torch.Generator().manual_seed(1))[0]
        return factor_eig, merged_eig

    factor_before, merged_before = eigenvalues()
    with torch.no_grad():
        model[0].lora_B.mul_(10.0)
        model[0].lora_A.div_(10.0)
    factor_after, merged_after = eigenvalues()
    assert abs(merged_after / merged_before - 1) < 1e-3
    assert abs(factor_after / factor_before - 1) > 0.5
    assert not any(layer.base.weight.requires_grad for layer in lora_layers(model).values())
