import pytest

from decodekit.budget import (
    AcceptanceEstimate,
    Budget,
    Calibration,
    LatencyCurve,
    Probe,
    Rate,
    best_draft_length,
    best_subtree,
    expected_tokens,
    probe_length,
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


# Fake curves with the shapes measured on the project's machines (../DESIGN.md, issue 22), so the
# cost rule's behaviour on every machine is tested on any machine.
EPYC_FP32 = LatencyCurve(prior={1: 1.0, 2: 1.71, 4: 1.71, 8: 1.71, 16: 2.24, 32: 2.36})  # steep step, then flat
EPYC_LLAMA_Q4_1 = LatencyCurve(prior={1: 1.0, 2: 1.80, 4: 2.41, 8: 3.81, 16: 6.73})  # steep everywhere
XEON_BF16 = LatencyCurve(prior={1: 1.0, 4: 0.92, 16: 0.89, 64: 2.04})  # flat, even cheaper than one token
CURVES = {"epyc-fp32": EPYC_FP32, "epyc-llama-q4_1": EPYC_LLAMA_Q4_1, "xeon-bf16": XEON_BF16, "flat": FLAT,
          "steep": STEEP}


def pessimistic() -> AcceptanceEstimate:
    """An estimate after a bad start: its first drafts were all rejected."""
    estimate = AcceptanceEstimate()
    for _ in range(5):
        estimate.update(0, 8)
    return estimate


def run_copies(estimate: AcceptanceEstimate, cost, steps: int, accept_all: bool) -> list[int]:
    """Draft lengths sent over `steps` steps of a 16-token proposal that the model accepts in
    full (a long, correct copy) or not at all."""
    sent = []
    for _ in range(steps):
        tokens = estimate.trim(list(range(16)), cost)
        if tokens:
            estimate.update(len(tokens) if accept_all else 0, len(tokens))
        sent.append(len(tokens))
    return sent


@pytest.mark.parametrize("curve", ["epyc-fp32", "epyc-llama-q4_1"])
def test_a_bad_start_does_not_switch_drafting_off_for_good(curve):
    cost = CURVES[curve]
    estimate = pessimistic()
    assert estimate.trim(list(range(16)), cost) == []  # the estimate alone refuses
    sent = run_copies(estimate, cost, 100, accept_all=True)
    first = next(i for i, n in enumerate(sent) if n)
    assert first < 10  # a probe went out soon
    assert all(sent[first:])  # each accepted probe is followed by another until drafts pay
    assert sent[-1] == 16  # and the whole copy goes out


@pytest.mark.parametrize("curve", ["xeon-bf16", "flat"])
def test_flat_curves_draft_even_after_a_bad_start(curve):
    assert pessimistic().trim(list(range(16)), CURVES[curve])  # extra tokens cost (next to) nothing


def test_where_drafting_never_pays_probes_stay_rare():
    estimate = pessimistic()
    sent = run_copies(estimate, EPYC_FP32, 1000, accept_all=False)
    probes = sum(1 for n in sent if n)
    # waits of 4, 8, 16, 32, then 64 refusals: about 19 probes in 1000 steps, never none
    assert 10 <= probes <= 20
    assert max(sent) <= probe_length(16, EPYC_FP32)


def test_steep_curves_refuse_until_a_probe_succeeds():
    # Every token costs a full step, so even all-accepted copies only break even: the estimate
    # refuses, and the probes keep testing it, each sending one token.
    estimate = pessimistic()
    sent = run_copies(estimate, STEEP, 40, accept_all=False)
    assert set(sent) == {0, 1}


@pytest.mark.parametrize("curve, expected", [
    ("epyc-fp32", 11),  # 12 tokens cost 2 steps: one probe tests a long copy
    ("epyc-llama-q4_1", 1),  # 2 tokens already cost 1.8 steps
    ("xeon-bf16", 16),  # flat: the whole proposal
    ("flat", 16),
    ("steep", 1),
])
def test_probe_length_follows_the_curve_shape(curve, expected):
    assert probe_length(16, CURVES[curve]) == expected
    assert probe_length(3, CURVES[curve]) <= 3


def test_probe_waits_back_off_and_reset():
    probe = Probe(min_wait=2, max_wait=8)
    waits = []
    for outcome in [0, 0, 0, 0, 1, 0]:
        count = 1
        while not probe.refuse():
            count += 1
        waits.append(count)
        probe.observe(outcome)
    assert waits == [2, 4, 8, 8, 8, 1]  # a probe that got a token through is followed by another
    assert probe.wait == 2  # after the last failure: back to at least min_wait
    probe.refuse()
    probe.drafted()  # a draft sent on its merits restarts the count
    assert [probe.refuse() for _ in range(2)] == [False, True]


def test_tree_calibration_probes_the_likeliest_nodes():
    calibration = Calibration()
    parents, probs = [-1, -1, 0, 2], [0.02, 0.01, 0.015, 0.01]  # nothing pays
    sizes = []
    for _ in range(4):
        kept = calibration.select(parents, probs, EPYC_FP32)
        sizes.append(len(kept))
    assert sizes == [0, 0, 0, 4]  # the fourth refusal goes out whole (4 nodes cost under 2 steps)
    calibration.observe(0)  # the probe failed: the wait doubles
    sizes = [len(calibration.select(parents, probs, EPYC_LLAMA_Q4_1)) for _ in range(8)]
    assert sizes == [0] * 7 + [1]  # on a steep curve a probe is the likeliest node alone
    calibration.observe(1)  # the probe's token was accepted: the next refusal probes again
    assert calibration.select(parents, probs, EPYC_LLAMA_Q4_1) == [0]
