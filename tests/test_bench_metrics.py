"""The benchmark's arithmetic on synthetic records, against values worked out by hand."""

import pytest

from decodekit.bench.metrics import OVERALL, step_totals, summarize, time_split
from decodekit.bench.records import Divergence, QuestionRecord, TurnResult


def turn(tokens, seconds, steps=None, hist=None, split=None):
    draft_s, forward_s, other_s = split or (None, None, None)
    return TurnResult(prompt_tokens=10, new_tokens=tokens, wall_s=seconds, token_ids=list(range(tokens)), text="x",
                      steps=steps, accepted_hist=hist, draft_s=draft_s, forward_s=forward_s, other_s=other_s)


def record(qid, category, method, turns, backend="decodekit", identical=None):
    return QuestionRecord(qid, category, method, backend, turns, identical_to_ar=identical)


RECORDS = [
    # category a: AR 10 and 20 tok/s (mean 15); pl 20 and 40 (mean 30) -> 2.0x
    record(1, "a", "ar", [turn(10, 1.0, 10, {1: 10}, (0.0, 0.9, 0.1))]),
    record(2, "a", "ar", [turn(20, 1.0, 20, {1: 20}, (0.0, 0.9, 0.1))]),
    record(1, "a", "pl", [turn(10, 0.5, 4, {1: 2, 4: 2}, (0.1, 0.3, 0.1))], identical=True),
    record(2, "a", "pl", [turn(20, 0.5, 5, {4: 5}, (0.1, 0.3, 0.1))], identical=False),
    # category b, two turns: AR (5 + 5) / (0.5 + 0.5) = 10 tok/s; pl (6 + 9) / (0.4 + 0.6) = 15 -> 1.5x
    record(3, "b", "ar", [turn(5, 0.5, 5, {1: 5}), turn(5, 0.5, 5, {1: 5})]),
    record(3, "b", "pl", [turn(6, 0.4, 3, {2: 3}, (0.2, 0.2, 0.0)), turn(9, 0.6, 3, {3: 3}, (0.0, 0.4, 0.0))],
           identical=True),
    # a baseline without steps, in b only: 10 / 2 = 5 tok/s -> 0.5x
    record(3, "b", "hf-greedy", [turn(10, 2.0)], backend="hf", identical=True),
]


@pytest.fixture(scope="module")
def summary():
    return summarize(RECORDS)


def test_methods_and_categories_keep_first_appearance_order(summary):
    assert summary.methods == ["ar", "pl", "hf-greedy"]
    assert summary.categories == ["a", "b"]
    assert ("hf-greedy", "a") not in summary.cells


def test_counts_and_tokens_per_s(summary):
    cell = summary.cell("pl", "a")
    assert (cell.questions, cell.new_tokens, cell.wall_s) == (2, 30, pytest.approx(1.0))
    assert cell.tokens_per_s == pytest.approx(30.0)  # mean(20, 40)
    assert summary.cell("ar", "a").tokens_per_s == pytest.approx(15.0)  # mean(10, 20)
    assert summary.cell("ar", OVERALL).tokens_per_s == pytest.approx(40 / 3)  # mean(10, 20, 10)
    assert summary.cell("hf-greedy", OVERALL).backend == "hf"


def test_mean_per_question_speed_is_not_total_tokens_over_total_time():
    # x: 10 tok in 0.5 s (20 tok/s) and 90 tok in 9 s (10 tok/s); AR: 10 tok/s on both.
    records = [record(1, "a", "ar", [turn(10, 1.0)]), record(2, "a", "ar", [turn(90, 9.0)]),
               record(1, "a", "x", [turn(10, 0.5)]), record(2, "a", "x", [turn(90, 9.0)])]
    cell = summarize(records).cell("x", "a")
    assert cell.tokens_per_s == pytest.approx((20 + 10) / 2)  # 15; pooled would be 100 / 9.5 = 10.5
    assert cell.speedup == pytest.approx(15 / 10)


def test_speedup_per_category_overall_and_mean_of_categories(summary):
    assert summary.cell("pl", "a").speedup == pytest.approx(2.0)
    assert summary.cell("pl", "b").speedup == pytest.approx(1.5)
    # overall pools the 3 questions: pl (20 + 40 + 15) / 3 over AR (10 + 20 + 10) / 3
    assert summary.cell("pl", OVERALL).speedup == pytest.approx(75 / 40)
    assert summary.mean_category_speedup("pl") == pytest.approx((2.0 + 1.5) / 2)
    assert summary.cell("ar", "a").speedup == pytest.approx(1.0)
    assert summary.cell("hf-greedy", "b").speedup == pytest.approx(0.5)
    # overall for hf-greedy is paired with AR on question 3 only: 5 / 10
    assert summary.cell("hf-greedy", OVERALL).speedup == pytest.approx(0.5)
    # hf-greedy has no cell in a: a mean over b alone would not compare with pl's
    assert summary.mean_category_speedup("hf-greedy") is None


def test_speedup_compares_the_same_questions_only():
    records = [record(1, "a", "ar", [turn(10, 1.0)]), record(2, "a", "ar", [turn(40, 1.0)]),
               record(1, "a", "x", [turn(20, 1.0)])]  # x has no answer for the fast question 2
    cell = summarize(records).cell("x", "a")
    assert cell.tokens_per_s == pytest.approx(20.0)
    assert cell.speedup == pytest.approx(20 / 10)  # not 20 / mean(10, 40)


def test_no_reference_or_zero_reference_speed_gives_no_speedup():
    assert summarize([record(1, "a", "x", [turn(10, 1.0)])]).cell("x", "a").speedup is None
    zero = [record(1, "a", "ar", [turn(0, 1.0)]), record(1, "a", "x", [turn(10, 1.0)])]
    assert summarize(zero).cell("x", "a").speedup is None


def test_tau_is_tokens_over_steps(summary):
    assert summary.cell("pl", "a").tau == pytest.approx(30 / 9)
    assert summary.cell("pl", "a").steps == 9
    assert summary.cell("pl", "b").tau == pytest.approx(15 / 6)
    assert summary.cell("pl", OVERALL).tau == pytest.approx((10 + 20 + 6 + 9) / (4 + 5 + 3 + 3))
    assert summary.cell("ar", OVERALL).tau == pytest.approx(1.0)
    assert (summary.cell("hf-greedy", OVERALL).steps, summary.cell("hf-greedy", OVERALL).tau) == (None, None)


def test_tau_ignores_turns_without_steps_and_zero_steps():
    assert step_totals([turn(10, 1.0, 5), turn(7, 1.0)]) == (5, pytest.approx(2.0))
    assert step_totals([turn(0, 1.0, 0)]) == (0, None)
    assert step_totals([turn(3, 1.0)]) == (None, None)


def test_histograms_add_up(summary):
    assert summary.cell("pl", "a").accepted_hist == {1: 2, 4: 7}
    assert summary.cell("pl", OVERALL).accepted_hist == {1: 2, 2: 3, 3: 3, 4: 7}
    assert list(summary.cell("pl", OVERALL).accepted_hist) == [1, 2, 3, 4]  # sorted by tokens per step
    assert summary.cell("ar", OVERALL).accepted_hist == {1: 40}
    assert summary.cell("hf-greedy", OVERALL).accepted_hist == {}


def test_identical_rate_counts_only_compared_records(summary):
    pl = summary.cell("pl", OVERALL)
    assert (pl.identical, pl.compared) == (2, 3)
    assert pl.identical_rate == pytest.approx(2 / 3)
    assert summary.cell("pl", "a").identical_rate == pytest.approx(0.5)
    ar = summary.cell("ar", OVERALL)
    assert (ar.compared, ar.identical_rate) == (0, None)  # AR is the reference, never compared


def test_bugs_count_only_unexplained_divergences():
    tie = Divergence(turn=0, position=1, ar_token=1, method_token=2, logit_gap=1e-5, tolerance=1e-3, is_bug=False)
    bug = Divergence(turn=0, position=1, ar_token=1, method_token=2, logit_gap=0.5, tolerance=1e-3, is_bug=True)
    records = [record(q, "a", "x", [turn(3, 1.0)], identical=False) for q in (1, 2, 3)]
    records[0].divergence, records[1].divergence = tie, bug
    cell = summarize(records).cell("x", "a")
    assert (cell.identical, cell.compared, cell.bugs) == (0, 3, 1)


def test_time_split_is_share_of_summed_parts(summary):
    # pl: draft 0.1 + 0.1 + 0.2 + 0 = 0.4, forward 0.3 + 0.3 + 0.2 + 0.4 = 1.2, other 0.1 + 0.1 = 0.2; sum 1.8
    assert summary.cell("pl", OVERALL).time_split == pytest.approx({"draft": 0.4 / 1.8, "forward": 1.2 / 1.8,
                                                                    "other": 0.2 / 1.8})
    assert summary.cell("hf-greedy", OVERALL).time_split is None
    # AR in b reports no split, so AR overall is a's alone: 0 / 1.8 / 0.2 of 2.0
    assert summary.cell("ar", OVERALL).time_split == pytest.approx({"draft": 0.0, "forward": 0.9, "other": 0.1})
    assert time_split([]) is None


def test_empty_input_gives_an_empty_summary():
    empty = summarize([])
    assert (empty.methods, empty.categories, empty.cells) == ([], [], {})
