import math

import dp_accounting
import pytest
from opacus.accountants.utils import get_noise_multiplier

from lalora_lite.accounting import PrivacyLedger, calibrate_noise_multiplier, epsilon_for


def google_rdp_epsilon(sigma: float, q: float, steps: int, delta: float) -> float:
    """Epsilon from Google's dp-accounting: an independent RDP implementation."""
    accountant = dp_accounting.rdp.RdpAccountant()
    event = dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma))
    accountant.compose(event, steps)
    return accountant.get_epsilon(delta)


def google_pld_epsilon(sigma: float, q: float, steps: int, delta: float) -> float:
    accountant = dp_accounting.pld.PLDAccountant(value_discretization_interval=1e-4)
    event = dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma))
    accountant.compose(event, steps)
    return accountant.get_epsilon(delta)


@pytest.mark.parametrize("epsilon, q, steps", [(1.0, 0.01, 1000), (3.0, 0.05, 400), (2.0, 1.0, 20)])
def test_rdp_calibration_matches_opacus_and_google(epsilon, q, steps):
    sigma = calibrate_noise_multiplier(epsilon, 1e-5, q, steps, "rdp")
    opacus_sigma = get_noise_multiplier(target_epsilon=epsilon, target_delta=1e-5, sample_rate=q, steps=steps)
    assert abs(sigma / opacus_sigma - 1) < 0.01
    spent = google_rdp_epsilon(sigma, q, steps, 1e-5)
    assert spent <= epsilon * 1.01  # Google's RDP agrees the budget holds...
    assert spent >= epsilon * 0.97  # ...and that sigma is not needlessly large


def test_prv_calibration_against_reference_and_pld():
    sigma = calibrate_noise_multiplier(1.0, 1e-5, 0.01, 1000, "prv")
    assert abs(sigma - 1.4258) / 1.4258 < 0.01  # PLATFORM.md reference value (opacus 1.6)
    assert abs(google_pld_epsilon(sigma, 0.01, 1000, 1e-5) - 1.0) < 0.03


def test_reference_values_rdp():
    assert abs(calibrate_noise_multiplier(1.0, 1e-5, 0.01, 1000, "rdp") - 1.5234) / 1.5234 < 0.01


def test_more_steps_need_more_noise_and_zero_noise_is_infinite():
    assert calibrate_noise_multiplier(1.0, 1e-5, 0.01, 2000) > calibrate_noise_multiplier(1.0, 1e-5, 0.01, 1000)
    assert epsilon_for(0.0, 0.01, 10, 1e-5) == math.inf
    assert epsilon_for(1.0, 0.01, 0, 1e-5) == 0.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"epsilon": 0}, "epsilon"),
        ({"epsilon": math.inf}, "epsilon"),
        ({"delta": 1.0}, "delta"),
        ({"sample_rate": 1.5}, "sample rate"),
        ({"steps": 0}, "steps"),
        ({"accountant": "gdp"}, "unknown accountant"),
    ],
)
def test_bad_inputs(kwargs, message):
    args = {"epsilon": 1.0, "delta": 1e-5, "sample_rate": 0.01, "steps": 100, **kwargs}
    with pytest.raises(ValueError, match=message):
        calibrate_noise_multiplier(**args)


def test_budget_that_cannot_be_met():
    with pytest.raises(ValueError, match="cannot be met"):
        calibrate_noise_multiplier(1e-4, 1e-5, 1.0, 100_000)


def test_ledger_never_spends_past_budget():
    sigma = calibrate_noise_multiplier(2.0, 1e-5, 0.1, 100)
    ledger = PrivacyLedger(sigma, 0.1, 2.0, 1e-5)
    assert ledger.affordable_steps(60) == 60
    ledger.spend(60)
    assert ledger.affordable_steps(60) == 40  # exactly the 100 calibrated steps fit
    with pytest.raises(RuntimeError, match="refusing"):
        ledger.spend(41)
    ledger.spend(40)
    assert ledger.epsilon <= 2.0 and ledger.epsilon > 1.97
    assert ledger.affordable_steps(5) == 0
    restored = PrivacyLedger.from_state_dict(ledger.state_dict())
    assert restored.steps == 100 and restored.epsilon == ledger.epsilon
