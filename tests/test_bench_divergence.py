"""The losslessness check on crafted divergences: where, and whether numerics can explain it."""

import pytest
import torch

from decodekit.bench.divergence import ENDED, TIE_TOLERANCE, check_record, first_divergence, is_bug, top2_gap
from decodekit.bench.records import Divergence, QuestionRecord, TurnResult


def turn(ids):
    return TurnResult(prompt_tokens=4, new_tokens=len(ids), wall_s=1.0, token_ids=list(ids), text="x")


def record(method, *turn_ids):
    return QuestionRecord(7, "mt_bench", method, "decodekit", [turn(ids) for ids in turn_ids])


class Gaps:
    """A gap_fn that answers a fixed gap and remembers what it was asked."""

    def __init__(self, gap):
        self.gap, self.asked = gap, []

    def __call__(self, turn_index, position):
        self.asked.append((turn_index, position))
        return self.gap


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


@pytest.mark.parametrize(
    "logits, gap",
    [
        (torch.tensor([0.5, 3.0, 2.75]), 0.25),
        ([1.0, 1.0, -2.0], 0.0),  # an exact tie
        (torch.tensor([[4.0, -1.0, 2.5]]), 1.5),  # a [1, vocab] row
        (torch.tensor([1.0, 1.0009765625], dtype=torch.float16), 0.0009765625),
        ([-5.0, -3.0], 2.0),
    ],
)
def test_top2_gap(logits, gap):
    assert top2_gap(logits) == pytest.approx(gap)


def test_top2_gap_needs_two_logits():
    with pytest.raises(ValueError, match="two logits"):
        top2_gap([1.0])


@pytest.mark.parametrize("gap, bug", [(0.0, False), (TIE_TOLERANCE, False), (TIE_TOLERANCE * 1.01, True),
                                      (2.5, True), (None, True)])
def test_tie_or_bug(gap, bug):
    assert is_bug(gap) is bug


def test_identical_records_ask_for_no_gap():
    ar = record("ar", [1, 2, 3], [4, 5])
    other = record("pl", [1, 2, 3], [4, 5])
    other.divergence = Divergence(0, 0, 1, 2, None, True)  # stale, from an earlier check
    check_record(ar, other, lambda t, p: pytest.fail("no divergence, no gap needed"))
    assert other.identical_to_ar is True and other.divergence is None


@pytest.mark.parametrize("gap, bug", [(TIE_TOLERANCE / 10, False), (0.75, True), (None, True)])
def test_divergence_in_first_turn_is_classified_by_ar_gap(gap, bug):
    ar = record("ar", [1, 2, 3, 4])
    other = record("pl", [1, 2, 8, 8])
    gaps = Gaps(gap)
    check_record(ar, other, gaps)
    assert gaps.asked == [(0, 2)]
    assert other.identical_to_ar is False
    assert other.divergence == Divergence(turn=0, position=2, ar_token=3, method_token=8, ar_top2_gap=gap, is_bug=bug)


def test_check_stops_at_the_first_differing_turn():
    ar = record("ar", [1, 2, 3], [4, 5, 6], [7, 8])
    # turn 1 differs at position 1; turn 2 differs too, but its prompt held a different answer
    other = record("pl", [1, 2, 3], [4, 9, 9], [0, 0])
    gaps = Gaps(TIE_TOLERANCE / 2)
    check_record(ar, other, gaps)
    assert gaps.asked == [(1, 1)]
    d = other.divergence
    assert (d.turn, d.position, d.ar_token, d.method_token, d.is_bug) == (1, 1, 5, 9, False)


def test_earlier_turn_wins_over_later_ones():
    ar = record("ar", [1, 2, 3], [4, 5, 6])
    other = record("pl", [1, 7, 7], [0, 0, 0])
    check_record(ar, other, Gaps(2.5))
    assert (other.divergence.turn, other.divergence.position, other.divergence.is_bug) == (0, 1, True)


def test_prefix_divergence_marks_the_side_that_ended():
    ar = record("ar", [1, 2])
    longer = record("pl", [1, 2, 3])
    gaps = Gaps(0.5)
    check_record(ar, longer, gaps)
    assert gaps.asked == [(0, 2)]  # the gap where AR stopped (it chose EOS over token 3)
    assert (longer.divergence.position, longer.divergence.ar_token, longer.divergence.method_token) == (2, ENDED, 3)

    shorter = record("pl", [1])
    check_record(ar, shorter, Gaps(0.5))
    assert (shorter.divergence.position, shorter.divergence.ar_token, shorter.divergence.method_token) == (1, 2, ENDED)


def test_a_missing_turn_is_a_divergence_no_gap_can_explain():
    ar = record("ar", [1, 2], [3, 4])
    truncated = record("pl", [1, 2])
    check_record(ar, truncated, lambda t, p: pytest.fail("no gap for a turn one side lacks"))
    assert truncated.identical_to_ar is False
    d = truncated.divergence
    assert (d.turn, d.position, d.ar_token, d.method_token, d.ar_top2_gap, d.is_bug) == (1, 0, 3, ENDED, None, True)
