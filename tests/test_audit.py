"""The privacy audit: its statistics against published values and an independent implementation, our
mechanism below its claim (with power), the authors' mechanism far above it, an under-noised
mechanism caught, and the safe defaults (weights-only checkpoints, OS-entropy noise)."""

import math
import pickle

import numpy as np
import pytest
import torch
from scipy import stats

from lalora_lite.accounting import calibrate_noise_multiplier
from lalora_lite.checkpoint import Checkpoint
from lalora_lite.diagnostics import audit
from lalora_lite.diagnostics.audit_run import AUDIT_PROFILES, step_audits
from lalora_lite.diagnostics.authors_mechanism import effective_noise_multiplier, fft_laplacian_smoothing
from lalora_lite.privacy import SecureRandom, noisy_gradient, poisson_batch

DELTA = 1e-5


@pytest.mark.parametrize(
    "m,r,v,p,expected",
    [
        (500, 100, 100, 0.05, 3.4792),
        (500, 100, 100, 0.01, 3.0232),
        (500, 35, 23, 0.05, 0.01455),
        (500, 100, 60, 0.05, 0.05074),
    ],
)
def test_one_run_bound_matches_published_values(m, r, v, p, expected):
    """Steinke, Nasr & Jagielski (2023): values published with the codedp audits (AUDIT.md 3.6)."""
    assert audit.one_run_epsilon_lower_bound(m, r, v, DELTA, p) == pytest.approx(expected, abs=1e-4)


def test_gaussian_dp_conversion():
    """mu-GDP -> epsilon (Dong, Roth & Su): reference values, and delta(eps(mu)) returns delta."""
    assert audit.gdp_epsilon(0.502, DELTA) == pytest.approx(2.00, abs=0.01)
    assert audit.gdp_epsilon(1.0, DELTA) == pytest.approx(4.377, abs=0.01)
    assert audit.gdp_epsilon(8.0, DELTA) == pytest.approx(65.3, abs=0.1)
    for mu in (0.3, 1.5, 4.0):
        assert audit.gdp_delta(mu, audit.gdp_epsilon(mu, DELTA)) == pytest.approx(DELTA, rel=1e-6)
    assert audit.gdp_epsilon(0.0, DELTA) == 0.0


def test_clopper_pearson_matches_scipy_exact_interval():
    for k, n in ((0, 50), (7, 50), (50, 50), (313, 1000)):
        ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
        assert audit.clopper_pearson(k, n, 0.05) == pytest.approx((ci.low, ci.high), abs=1e-9)


def test_perfect_separation_reaches_the_known_cap():
    """All 500 'in' above and all 500 'out' below: eps_lb = log((1 - 2.5%^(1/500)... ) ~ ln(n / ln(2/alpha))."""
    scores_in, scores_out = np.ones(500), np.zeros(500)
    bound = audit.epsilon_lower_bound(scores_in, scores_out, 0.5, DELTA, 0.05)
    assert bound == pytest.approx(4.91, abs=0.05)  # AUDIT.md 3.3 table


@pytest.fixture(scope="module")
def step_table():
    return step_audits(AUDIT_PROFILES["smoke"]).set_index(["mechanism", "claimed_epsilon"])


def test_our_dp_step_stays_below_its_claim_with_power(step_table):
    ours = step_table.loc["ours (per-example clipping)"]
    assert len(ours) == 4
    for _, row in ours.iterrows():
        assert row.epsilon_lb_cp <= row.name
        assert row.epsilon_lb_gdp <= row.exact_epsilon <= row.name  # exact GDP epsilon <= the accountant's
        # power: the canary path works and the noise is not inflated: mu estimate within a factor 1.3
        assert row.claimed_mu / 1.3 <= row.mu_estimate <= 1.3 * row.claimed_mu
    assert ours["epsilon_lb_gdp"].max() > 1.0  # the audit does detect something at large epsilon


def test_authors_mechanism_is_far_above_its_claim(step_table):
    """Margins asserted: Clopper-Pearson >= claim + 3 at eps 1 and 2 (its cap at 2000 test trials is
    about 5.6, so larger claims cannot be exceeded by CP), and the GDP bound >= 3x the claim everywhere."""
    theirs = step_table.loc["authors (batch-mean clipping)"]
    for claimed, row in theirs.iterrows():
        if claimed < 3:
            assert row.epsilon_lb_cp >= claimed + 3
        assert row.epsilon_lb_gdp >= 3 * claimed
        assert row.epsilon_its_sigma_buys > 100 * claimed
    assert effective_noise_multiplier(2.0, 16, 4) == pytest.approx(2.0 / (2 * 16 * 2))


def test_an_under_noised_mechanism_is_caught():
    """Claim sigma but add sigma/4: the audit must report a bound above the claim (it can fail)."""
    sigma = calibrate_noise_multiplier(1.0, DELTA, 1.0, 1)
    claimed, mu = audit.claim(sigma, 1, DELTA)
    canary = audit.DiracCanary({"t0": 3}, magnitude=100.0)
    background = audit.background_gradients(4, 16, 16, 2.0, canary, seed=0)
    scores_in, scores_out = audit.audit_mechanism(
        audit.dp_sgd_mechanism(1.0, sigma / 4, 16), background, canary, 4000, seed=1
    )
    result = audit.summarise("broken", scores_in, scores_out, claimed, mu, DELTA)
    assert result.epsilon_lb_gdp > claimed
    assert result.mu_estimate > 3 * mu


def test_whole_local_update_of_lalora_stays_below_its_claim():
    """training.local_update itself, canary in both factors (so in every step of the alternation)."""
    steps = 2
    sigma = calibrate_noise_multiplier(4.0, DELTA, 1.0, steps)
    claimed, mu = audit.claim(sigma, steps, DELTA)
    scores_in, scores_out = audit.audit_local_update("lalora", sigma, steps, trials=300)
    result = audit.summarise("lalora", scores_in, scores_out, claimed, mu, DELTA)
    assert result.epsilon_lb_cp <= claimed and result.epsilon_lb_gdp <= claimed
    assert mu / 1.5 <= result.mu_estimate <= 1.5 * mu  # 300 trials: standard error about 0.12


def test_a_canary_in_one_factor_is_seen_in_half_of_lalora_steps():
    """The pitfall the audit codes around: LA-LoRA trains B at even steps only, so a canary in B alone
    is present in 2 of 4 steps and the measured mu is the claim's divided by sqrt(2)."""
    steps = 4
    sigma = calibrate_noise_multiplier(4.0, DELTA, 1.0, steps)
    _, mu = audit.claim(sigma, steps, DELTA)
    scores_in, scores_out = audit.audit_local_update("lalora", sigma, steps, trials=300, factors=("B",))
    assert audit.gdp_mu_estimate(scores_in, scores_out) == pytest.approx(mu / math.sqrt(2), rel=0.3)
    with pytest.raises(ValueError, match="factors must be"):
        audit.audit_local_update("lalora", sigma, steps, 1, factors=("C",))


def test_canary_is_a_single_clipped_example():
    canary = audit.DiracCanary({"a": 1, "b": 0}, magnitude=50.0)
    per_example = {"a": torch.zeros(3, 2, 2), "b": torch.zeros(3, 4)}
    with_it = audit.with_canary(per_example, canary)
    assert with_it["a"].shape == (4, 2, 2) and with_it["a"][3].flatten()[1] == pytest.approx(50 / math.sqrt(2))
    update = noisy_gradient(with_it, 1.0, 0.0, 1.0)  # no noise: the projection is exactly C
    assert canary.project(update) == pytest.approx(1.0)
    assert audit.with_canary({"c": torch.zeros(2, 3)}, canary)["c"].shape == (2, 3)  # inactive: no row


def test_fft_smoothing_keeps_the_mean_and_damps_high_frequencies():
    g = torch.randn(8, 16, dtype=torch.float64)
    smoothed = fft_laplacian_smoothing(g, 1.0)
    assert smoothed.mean().item() == pytest.approx(g.mean().item(), abs=1e-12)
    checker = torch.tensor([[(-1.0) ** (i + j) for j in range(16)] for i in range(8)], dtype=torch.float64)
    # the checkerboard is the highest frequency: cos = -1 on both axes, divided by 1 + 2 (2 + 1 + 1) = 9
    assert fft_laplacian_smoothing(checker, 1.0).abs().max() == pytest.approx(1 / 9)


def test_checkpoints_load_weights_only_and_reject_foreign_files(tmp_path):
    path = tmp_path / "run.pt"
    Checkpoint({"method": "lalora"}, 3, {"w": torch.ones(2)}, [{"steps": 4}], [{"round": 1, "x": math.inf}]).save(path)
    loaded = Checkpoint.load(path)
    assert loaded.round == 3 and torch.equal(loaded.global_state["w"], torch.ones(2))

    class Evil:
        def __reduce__(self):
            return (print, ("this would run code",))

    torch.save({"config": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="evil.pt is not a readable lalora_lite checkpoint"):
        Checkpoint.load(tmp_path / "evil.pt")
    torch.save({"weights": torch.ones(1)}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="foreign.pt is not a lalora_lite checkpoint: expected the fields"):
        Checkpoint.load(tmp_path / "foreign.pt")
    (tmp_path / "junk.pt").write_bytes(pickle.dumps([1, 2]) + b"garbage")
    with pytest.raises(ValueError, match="junk.pt"):
        Checkpoint.load(tmp_path / "junk.pt")


def test_secure_noise_has_the_right_scale_and_is_not_reproducible():
    """OS-entropy noise cannot be seeded, so every bound is 5 standard errors of its estimate (a false
    failure about once in 1.7 million runs): the mean of n = 200,000 draws has standard error
    sigma / sqrt(n) (1.3e-4 here; an earlier bound of 2e-4 was 1.6 standard errors and failed about one
    run in nine), the sample std's relative standard error is 1 / sqrt(2 n) (0.0016)."""
    zeros = {"w": torch.zeros(1, 400, 500)}
    sigma, n = 1.3 * 0.7 / 16, 400 * 500
    first = noisy_gradient(zeros, 0.7, 1.3, 16.0, SecureRandom())["w"]
    second = noisy_gradient(zeros, 0.7, 1.3, 16.0, SecureRandom())["w"]
    assert abs(first.std().item() / sigma - 1) < 5 / math.sqrt(2 * n)
    assert abs(first.mean().item()) < 5 * sigma / math.sqrt(n)
    assert first.dtype == torch.float32 and not torch.equal(first, second)
    sizes = [len(poisson_batch(1000, 0.05, SecureRandom())) for _ in range(400)]
    assert abs(np.mean(sizes) - 50) < 5 * math.sqrt(1000 * 0.05 * 0.95 / 400)
