import pytest

from decodekit.budget import (
    AcceptanceEstimate,
    Budget,
    Calibration,
    LatencyCurve,
    Rate,
    best_draft_length,
    best_subtree,
    expected_tokens,
)

FLAT = LatencyCurve(prior={1: 1.0, 128: 1.0})  # a GPU-like curve: extra tokens are free
STEEP = LatencyCurve(prior={1: 1.0, 2: 2.0, 128: 128.0})  # every token costs a full step


@pytest.mark.parametrize("first, cont, k, expected",
                         [(0.5, 0.5, 0, 1.0), (0.5, 0.5, 2, 1.75), (1.0, 1.0, 4, 5.0), (0.0, 1.0, 5, 1.0)])
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


def test_forgetting_returns_to_the_rates_own_prior():
    rate = Rate(hits=0.2, misses=1.0)  # a deep tree node: rarely accepted a priori
    for _ in range(20):
        rate.update(1, 0)
    for _ in range(2000):
        rate.forget()
    assert rate.value == pytest.approx(0.2 / 1.2, abs=0.01)


def test_acceptance_estimate_censors_full_acceptance():
    estimate = AcceptanceEstimate()
    estimate.update(4, 4)  # all accepted: no evidence of a stop
    assert estimate.cont.misses == pytest.approx(0.95)
    estimate.update(0, 4)
    assert estimate.first.misses == pytest.approx(0.95 * 0.95 + 1)


# root ─┬─ 0 (0.9) ── 2 (0.7) ── 3 (0.6)
#       └─ 1 (0.1)
TREE = [-1, -1, 0, 2]
PROBS = [0.9, 0.1, 0.7, 0.6]
CPU = LatencyCurve(prior={1: 1.0, 2: 1.1, 3: 1.2, 4: 1.3, 5: 1.5})


def test_best_subtree_takes_likely_deep_nodes_before_unlikely_shallow_ones():
    assert best_subtree(TREE, PROBS, CPU) == [0, 2, 3]
    assert best_subtree(TREE, PROBS, FLAT) == [0, 1, 2, 3]
    assert best_subtree(TREE, PROBS, STEEP) == []


def test_best_subtree_never_keeps_a_node_without_its_parent():
    # the child looks likelier than its parent (noisy estimates): it still comes after it
    kept = best_subtree([-1, 0, -1], [0.2, 0.95, 0.5], CPU)
    assert all(parent in kept or parent == -1 for parent in ([-1, 0, -1][k] for k in kept))
    assert kept == [0, 1, 2]


def test_budget_after_charges_marginal_cost():
    budget = Budget(10, CPU)
    rest = budget.after(2)
    assert rest.max_tokens == 8
    # one more token on top of a 3-token forward costs cost(4) / cost(3)
    assert rest.cost(2) == pytest.approx(1.3 / 1.2)
    assert rest.cost(1) == pytest.approx(1.0)
    assert budget.after(0) is budget


def test_calibration_learns_the_ratio_of_actual_to_predicted():
    calibration = Calibration()
    for _ in range(200):
        calibration.update(predicted=2.0, actual=0.5)
    assert calibration.factor == pytest.approx(0.25, abs=0.01)
    for _ in range(200):
        calibration.update(predicted=0.0, actual=10.0)
    assert calibration.factor == 2.0  # capped: one lucky patch must not blow up tree sizes


def test_calibration_drifts_back_while_nothing_is_drafted():
    calibration = Calibration()
    for _ in range(200):
        calibration.update(predicted=2.0, actual=0.0)
    assert calibration.factor == 0.05
    for _ in range(1000):
        calibration.forget()
    assert calibration.factor == pytest.approx(1.0, abs=0.05)
