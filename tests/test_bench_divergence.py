"""The losslessness check on crafted divergences: where, and whether numerics can explain it."""

import pytest
import torch

from decodekit.bench.divergence import (
    ENDED,
    TIE_RELATIVE,
    check_record,
    first_divergence,
    is_bug,
    logit_gap,
    tie_tolerance,
)
from decodekit.bench.records import Divergence, QuestionRecord, TurnResult


def turn(ids):
    return TurnResult(prompt_tokens=4, new_tokens=len(ids), wall_s=1.0, token_ids=list(ids), text="x")


def record(method, *turn_ids):
    return QuestionRecord(7, "mt_bench", method, "decodekit", [turn(ids) for ids in turn_ids])


class Judge:
    """Answers a fixed (gap, tolerance) and remembers what it was asked."""

    def __init__(self, gap, tolerance=1e-3):
        self.answer, self.asked = (gap, tolerance), []

    def __call__(self, turn_index, position, ar_token, method_token):
        self.asked.append((turn_index, position, ar_token, method_token))
        return self.answer


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
    logits = torch.tensor([10.0, 9.9999, 4.0, 0.0])
    assert logit_gap(logits, 0, 1) == pytest.approx(1e-4, abs=1e-6)
    assert logit_gap(logits, 0, 2) == pytest.approx(6.0)
    tolerance = tie_tolerance(logits, "fp32")
    assert not is_bug(logit_gap(logits, 0, 1), tolerance)
    assert is_bug(logit_gap(logits, 0, 2), tolerance)


@pytest.mark.parametrize("dtype", list(TIE_RELATIVE))
def test_tolerance_scales_with_the_logits_and_widens_with_coarser_dtypes(dtype):
    assert tie_tolerance([0.1, -0.2], dtype) == pytest.approx(TIE_RELATIVE[dtype])  # scale floored at 1
    assert tie_tolerance([30.0, -40.0, 2.0], dtype) == pytest.approx(40 * TIE_RELATIVE[dtype])
    assert TIE_RELATIVE["fp32"] < TIE_RELATIVE["fp16"] < TIE_RELATIVE["bf16"]


def test_a_bf16_rounding_gap_is_a_tie_in_bf16_but_a_bug_in_fp32():
    logits = torch.tensor([20.0, 19.875, 3.0])  # one bf16 step apart at this magnitude
    gap = logit_gap(logits, 0, 1)
    assert not is_bug(gap, tie_tolerance(logits, "bf16"))
    assert is_bug(gap, tie_tolerance(logits, "fp32"))


def test_unknown_dtype_has_no_tolerance():
    with pytest.raises(ValueError, match="int8"):
        tie_tolerance([1.0, 2.0], "int8")


@pytest.mark.parametrize("gap, tolerance, bug", [(0.0, 1e-3, False), (1e-3, 1e-3, False), (1.01e-3, 1e-3, True),
                                                 (-1e-4, 1e-3, False), (None, 1e-3, True), (0.5, None, True)])
def test_tie_or_bug(gap, tolerance, bug):
    assert is_bug(gap, tolerance) is bug


def test_identical_records_ask_for_no_judgement():
    ar = record("ar", [1, 2, 3], [4])
    other = record("pl", [1, 2, 3], [4])
    other.divergence = Divergence(0, 0, 1, 2, None, None, True)  # stale, from an earlier check
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
                                          tolerance=1e-3, is_bug=bug)


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
