"""The losslessness check on crafted divergences: where, and whether numerics can explain it."""

import pytest
import torch

from decodekit.bench.divergence import (
    ENDED,
    Verdict,
    check_record,
    first_divergence,
    is_bug,
    judge_rows,
    logit_gap,
    tie_tolerance,
)
from decodekit.bench.drift import MARGIN, drift_table, measured_drift
from decodekit.bench.records import Divergence, QuestionRecord, TurnResult
from decodekit.bench.witness import Evidence


class Form:
    """Just what the judge reads of a backend: its kind and form."""

    def __init__(self, kind: str, form: str):
        self.kind = kind
        if kind == "llama.cpp":
            self.weight_type = form
        else:
            self.dtype_name = form


def turn(ids):
    return TurnResult(prompt_tokens=4, new_tokens=len(ids), wall_s=1.0, token_ids=list(ids), text="x")


def record(method, *turn_ids):
    return QuestionRecord(7, "mt_bench", method, "decodekit", [turn(ids) for ids in turn_ids])


class Judge:
    """Answers a fixed verdict (a gap against a bound) and remembers what it was asked."""

    def __init__(self, gap, tolerance=1e-3):
        self.gap, self.tolerance, self.asked = gap, tolerance, []

    def __call__(self, turn_index, position, ar_token, method_token):
        self.asked.append((turn_index, position, ar_token, method_token))
        return Verdict(self.gap, self.tolerance, 1, note="over" if is_bug(self.gap, self.tolerance) else "")


@pytest.mark.parametrize(
    "ar, other, expected",
    [
        ([1, 2, 3], [1, 2, 3], None),
        ([], [], None),
        ([1, 2, 3], [9, 2, 3], 0),
        ([1, 2, 3], [1, 5, 3], 1),
        ([1, 2, 3], [1, 2, 4], 2),
        ([1, 2], [1, 2, 3], 2),  # the method ran on after AR stopped
        ([1, 2, 3], [1], 1),  # the method stopped early
        ([], [4], 0),
        ([1, 2], [1, 3, 4, 5], 1),  # a real difference before the shorter one ends
    ],
)
def test_first_divergence(ar, other, expected):
    assert first_divergence(ar, other) == expected


def test_the_gap_is_between_ar_token_and_the_method_token_not_ar_top_two():
    # AR's top two (tokens 0 and 1) nearly tie, but the method emitted token 2, far below:
    # a top-2 gap would excuse it; the gap to the method's own token does not.
    logits = torch.tensor([10.0, 9.99999, 4.0, 0.0])
    assert logit_gap(logits, 0, 1) == pytest.approx(1e-5, abs=1e-6)
    assert logit_gap(logits, 0, 2) == pytest.approx(6.0)
    tolerance = tie_tolerance(logits, Form("hf", "fp32"))
    assert not is_bug(logit_gap(logits, 0, 1), tolerance)
    assert is_bug(logit_gap(logits, 0, 2), tolerance)


@pytest.mark.parametrize("kind, form", [("hf", "fp32"), ("hf", "bf16"), ("llama.cpp", "Q4_1"), ("llama.cpp", "Q8_0")])
def test_the_bound_is_the_measured_gap_drift_with_a_margin(kind, form):
    measured = drift_table()["forms"][kind][form]["gap_drift"]
    assert tie_tolerance([30.0, -400.0, 2.0], Form(kind, form)) == pytest.approx(MARGIN * measured)


def test_the_measured_drift_is_far_below_the_old_tolerances():
    # The old rule excused 1e-3 (fp32), 1e-1 (bf16) and 0.15 (llama.cpp's quantized types) of the
    # largest |logit|: 2-6 logits on llama.cpp. What numerics really move a gap by is measured.
    table = drift_table()["forms"]
    assert table["hf"]["fp32"]["gap_drift"] < 1e-3 < table["hf"]["bf16"]["gap_drift"]
    assert all(entry["gap_drift"] < 2.0 for entry in table["llama.cpp"].values())


def test_a_form_never_measured_takes_the_largest_on_its_backend_and_says_so():
    entries = drift_table()["forms"]["llama.cpp"]
    measured, source = measured_drift("llama.cpp", "IQ2_XXS")
    assert measured == max(e["gap_drift"] for e in entries.values())
    assert source.startswith("llama.cpp IQ2_XXS not measured: the largest on llama.cpp")
    with pytest.raises(KeyError, match="vllm"):
        measured_drift("vllm", "fp16")


AR_ROW = Evidence(5, [5, 7, 2, 9], [10.0, 9.95, 8.0, 3.0])


@pytest.mark.parametrize("theirs, method_token, faithful, note", [
    (Evidence(7, [7, 5, 2, 9], [9.99, 9.97, 8.0, 3.0]), 7, True, ""),  # a near-tie that flipped: numerics
    (None, 7, None, ""),  # a library's own decoding: the gap alone
    (Evidence(7, [7, 5, 2, 9], [9.99, 9.97, 8.0, 3.0]), 7, False, "unfaithful: wrong sibling"),
    (Evidence(2, [2, 5, 7, 9], [10.5, 9.97, 9.9, 3.0]), 2, True, "a gap of 2 logits, over the bound of 0.2"),
    (Evidence(7, [7, 5, 2, 9], [9.99, 9.7, 8.0, 3.0]), 7, True,
     "the verifier's gaps moved 0.34 logits from AR's, over the bound of 0.2"),
    (Evidence(4, [4, 7, 5, 2], [12.0, 9.9, 9.8, 8.0]), 4, True, "the method's token is not among AR's top 4"),
])
def test_a_divergence_is_numerics_only_if_faithful_within_the_drift_and_the_gap(theirs, method_token, faithful, note):
    verdict = judge_rows(AR_ROW, theirs, 5, method_token, 0.2, faithful, "wrong sibling")
    assert verdict.note == note and verdict.is_bug is bool(note)
    assert verdict.rank == (AR_ROW.top_ids.index(method_token) if method_token in AR_ROW.top_ids else None)


@pytest.mark.parametrize("gap, tolerance, bug", [(0.0, 1e-3, False), (1e-3, 1e-3, False), (1.01e-3, 1e-3, True),
                                                 (-1e-4, 1e-3, False), (-2e-3, 1e-3, True), (None, 1e-3, True),
                                                 (0.5, None, True), (float("inf"), 1.0, True)])
def test_tie_or_bug(gap, tolerance, bug):
    assert is_bug(gap, tolerance) is bug


def test_identical_records_ask_for_no_judgement():
    ar = record("ar", [1, 2, 3], [4])
    other = record("pl", [1, 2, 3], [4])
    other.divergence = Divergence(0, 0, 1, 2, None, None, True, note="stale")  # from an earlier check
    check_record(ar, other, lambda *args: pytest.fail("no divergence, nothing to judge"))
    assert other.identical_to_ar is True and other.divergence is None


@pytest.mark.parametrize("gap, bug", [(1e-4, False), (0.75, True)])
def test_divergence_in_first_turn_is_judged_on_both_tokens(gap, bug):
    ar = record("ar", [1, 2, 3, 4])
    other = record("pl", [1, 2, 8, 4])
    judge = Judge(gap)
    check_record(ar, other, judge)
    assert judge.asked == [(0, 2, 3, 8)]
    assert other.identical_to_ar is False
    assert other.divergence == Divergence(turn=0, position=2, ar_token=3, method_token=8, logit_gap=gap,
                                          tolerance=1e-3, is_bug=bug, rank=1, note="over" if bug else "")


def test_check_stops_at_the_first_differing_turn():
    ar = record("ar", [1, 2, 3], [4, 5, 6], [7, 8])
    # turn 1 differs at position 1; turn 2 differs too, but its prompt held a different answer
    other = record("pl", [1, 2, 3], [4, 9, 9], [0, 0])
    judge = Judge(5e-4)
    check_record(ar, other, judge)
    assert judge.asked == [(1, 1, 5, 9)]
    d = other.divergence
    assert (d.turn, d.position, d.ar_token, d.method_token, d.is_bug) == (1, 1, 5, 9, False)


def test_earlier_turn_wins_over_later_ones():
    ar = record("ar", [1, 2, 3], [4, 5, 6])
    other = record("pl", [1, 7, 7], [0, 0, 0])
    check_record(ar, other, Judge(2.5))
    assert (other.divergence.turn, other.divergence.position, other.divergence.is_bug) == (0, 1, True)


def test_a_side_that_ended_early_is_a_divergence_no_tie_can_explain():
    ar = record("ar", [1, 2])
    for other, expected in [(record("pl", [1, 2, 3]), (2, ENDED, 3)), (record("pl", [1]), (1, 2, ENDED))]:
        check_record(ar, other, lambda *args: pytest.fail("no second token to compare"))
        d = other.divergence
        assert (d.position, d.ar_token, d.method_token, d.logit_gap, d.is_bug) == (*expected, None, True)


def test_a_missing_turn_is_a_divergence_no_gap_can_explain():
    ar = record("ar", [1, 2], [3, 4])
    truncated = record("pl", [1, 2])
    check_record(ar, truncated, lambda *args: pytest.fail("nothing to judge for a turn one side lacks"))
    assert truncated.identical_to_ar is False
    d = truncated.divergence
    assert (d.turn, d.position, d.ar_token, d.method_token, d.logit_gap, d.is_bug) == (1, 0, 3, ENDED, None, True)
