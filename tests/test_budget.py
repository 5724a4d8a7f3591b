import pytest

from decodekit.budget import AcceptanceEstimate, LatencyCurve, Rate, best_draft_length, expected_tokens

FLAT = LatencyCurve(prior={1: 1.0, 128: 1.0})  # a GPU-like curve: extra tokens are free
STEEP = LatencyCurve(prior={1: 1.0, 2: 2.0, 128: 128.0})  # every token costs a full step


@pytest.mark.parametrize("first, cont, k, expected", [(0.5, 0.5, 0, 1.0), (0.5, 0.5, 2, 1.75), (1.0, 1.0, 4, 5.0), (0.0, 1.0, 5, 1.0)])
def test_expected_tokens(first, cont, k, expected):
    assert expected_tokens(first, cont, k) == pytest.approx(expected)


def test_best_length_follows_the_cost_curve():
    assert best_draft_length(0.8, 0.9, 16, FLAT) == 16
    assert best_draft_length(0.8, 0.9, 16, STEEP) == 0
    assert best_draft_length(0.0, 0.0, 16, FLAT) == 0
    # on the default CPU curve, a good draft pays and a poor one does not
    assert best_draft_length(0.9, 0.9, 16, LatencyCurve()) > 4
    assert best_draft_length(0.05, 0.5, 16, LatencyCurve()) == 0


def test_latency_curve_interpolates_prior_and_learns():
    curve = LatencyCurve(prior={1: 1.0, 3: 2.0, 5: 4.0})
    assert curve(2) == pytest.approx(1.5)
    assert curve(7) == pytest.approx(6.0)  # extrapolated with the last slope
    for _ in range(3):
        curve.record(1, 0.1)
        curve.record(3, 0.15)
    assert curve(3) == pytest.approx(1.5)
    assert curve(5) == pytest.approx(4.0 * 1.5 / 2.0)  # the prior's shape, rescaled past the data


def test_rates_learn_and_forget():
    rate = Rate()
    assert rate.value == 0.5
    for _ in range(20):
        rate.update(0, 1)
    assert rate.value < 0.1
    for _ in range(1000):
        rate.forget()
    assert rate.value == pytest.approx(0.5, abs=0.01)


def test_acceptance_estimate_censors_full_acceptance():
    estimate = AcceptanceEstimate()
    estimate.update(4, 4)  # all accepted: no evidence of a stop
    assert estimate.cont.misses == pytest.approx(0.95)
    estimate.update(0, 4)
    assert estimate.first.misses == pytest.approx(0.95 * 0.95 + 1)
