"""The benchmark's arithmetic on synthetic records, against values worked out by hand."""

import math

import pytest

from decodekit.bench.metrics import (
    OVERALL,
    acceptance_rate,
    agreement,
    fastest_ar,
    perplexity,
    step_totals,
    summarize,
    time_split,
)
from decodekit.bench.records import Divergence, QuestionRecord, TurnResult


def turn(tokens, seconds, steps=None, hist=None, split=None, drafted=None, nll=None):
    draft_s, forward_s, other_s = split or (None, None, None)
    return TurnResult(prompt_tokens=10, new_tokens=tokens, wall_s=seconds, token_ids=list(range(tokens)), text="x",
                      steps=steps, accepted_hist=hist, drafted_tokens=drafted, nll=nll, draft_s=draft_s,
                      forward_s=forward_s, other_s=other_s)


def record(qid, category, method, turns, backend="decodekit", identical=None, agreed=None, compared=None):
    return QuestionRecord(qid, category, method, backend, turns, identical_to_ar=identical, agreed_tokens=agreed,
                          compared_tokens=compared)


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


def speeds(method, per_question, category="a"):
    """One record per question, each one turn of `tokens` in 1 s: its speed is `tokens` tok/s."""
    return [record(qid, category, method, [turn(tokens, 1.0)]) for qid, tokens in per_question.items()]


def test_fastest_ar_is_the_ar_row_with_the_highest_mean_speed():
    # ar: mean(10, 20) = 15; ar@bf16: mean(24, 36) = 30; x is faster still, but is not AR
    records = [*speeds("ar", {1: 10, 2: 20}), *speeds("ar@bf16", {1: 24, 2: 36}), *speeds("x", {1: 90, 2: 90})]
    assert fastest_ar(records) == "ar@bf16"
    assert summarize(records).fastest_ar == "ar@bf16"
    slower = [*speeds("ar", {1: 10, 2: 20}), *speeds("ar@bf16", {1: 5, 2: 10})]  # mean 7.5 < 15
    assert fastest_ar(slower) == "ar"
    assert fastest_ar(speeds("ar", {1: 10})) == "ar"
    assert fastest_ar(speeds("x", {1: 10})) == "ar"  # no AR row at all: the reference name
    assert fastest_ar([]) == "ar" and summarize([]).fastest_ar == "ar"
    # Only `ar` and `ar@DTYPE` are AR rows: a fast method whose name merely starts with "ar" is not.
    assert fastest_ar([*speeds("ar", {1: 10}), *speeds("ar-fast", {1: 99}), *speeds("arx@bf16", {1: 99})]) == "ar"


def test_speedup_vs_fastest_ar_when_another_dtype_is_faster():
    # ar 15 tok/s on average, ar@bf16 30, x mean(45, 27) = 36
    records = [*speeds("ar", {1: 10, 2: 20}), *speeds("ar@bf16", {1: 24, 2: 36}), *speeds("x", {1: 45, 2: 27})]
    summary = summarize(records)
    x = summary.cell("x", OVERALL)
    assert x.speedup == pytest.approx(36 / 15)  # 2.4
    assert x.speedup_fastest_ar == pytest.approx(36 / 30)  # 1.2
    assert x.speedup is not None and x.speedup_fastest_ar is not None
    assert x.speedup_fastest_ar / x.speedup == pytest.approx(15 / 30)  # exactly AR's speed over bf16 AR's
    assert summary.cell("x", "a").speedup_fastest_ar == pytest.approx(1.2)
    bf16 = summary.cell("ar@bf16", OVERALL)
    assert (bf16.speedup, bf16.speedup_fastest_ar) == (pytest.approx(2.0), pytest.approx(1.0))
    ar = summary.cell("ar", OVERALL)
    assert (ar.speedup, ar.speedup_fastest_ar) == (pytest.approx(1.0), pytest.approx(0.5))


def test_speedup_vs_fastest_ar_equals_speedup_when_ar_is_fastest():
    records = [*speeds("ar", {1: 10, 2: 20}), *speeds("ar@bf16", {1: 5, 2: 10}), *speeds("x", {1: 45, 2: 27})]
    summary = summarize(records)
    assert summary.fastest_ar == "ar"
    for method in ["x", "ar@bf16", "ar"]:
        cell = summary.cell(method, OVERALL)
        assert cell.speedup_fastest_ar == cell.speedup
    assert summary.cell("x", OVERALL).speedup == pytest.approx(36 / 15)
    assert summary.cell("ar@bf16", OVERALL).speedup == pytest.approx(7.5 / 15)


def test_speedup_vs_fastest_ar_pairs_questions_like_speedup():
    # x answered question 1 only: 45 against ar's 10 and ar@bf16's 24 on that question
    records = [*speeds("ar", {1: 10, 2: 20}), *speeds("ar@bf16", {1: 24, 2: 36}), *speeds("x", {1: 45})]
    x = summarize(records).cell("x", OVERALL)
    assert x.speedup == pytest.approx(45 / 10)
    assert x.speedup_fastest_ar == pytest.approx(45 / 24)  # not 45 / mean(24, 36)
    # x in a category without the fastest AR row has no speedup against it
    lone = [*speeds("ar", {1: 10}), *speeds("ar@bf16", {1: 24}), *speeds("ar", {2: 10}, "b"), *speeds("x", {2: 30}, "b")]
    cell = summarize(lone).cell("x", "b")
    assert (cell.speedup, cell.speedup_fastest_ar) == (pytest.approx(3.0), None)


def test_fastest_ar_is_chosen_overall_and_used_in_every_category():
    # a: ar 10, ar@bf16 20; b: ar 30, ar@bf16 25. Overall ar mean(10, 30) = 20 < ar@bf16 mean(20, 25) = 22.5.
    records = [*speeds("ar", {1: 10}), *speeds("ar@bf16", {1: 20}), *speeds("x", {1: 40}),
               *speeds("ar", {2: 30}, "b"), *speeds("ar@bf16", {2: 25}, "b"), *speeds("x", {2: 50}, "b")]
    summary = summarize(records)
    assert summary.fastest_ar == "ar@bf16"
    # in b, AR itself is faster than ar@bf16, but the reference stays the overall fastest row
    assert summary.cell("x", "b").speedup_fastest_ar == pytest.approx(50 / 25)
    assert summary.cell("x", "b").speedup == pytest.approx(50 / 30)
    assert summary.cell("x", "a").speedup_fastest_ar == pytest.approx(40 / 20)
    assert summary.cell("x", OVERALL).speedup_fastest_ar == pytest.approx(45 / 22.5)


def test_acceptance_rate_is_accepted_over_drafted_summed_over_turns():
    turns = [
        turn(10, 1.0, steps=4, drafted=12),  # 10 - 4 = 6 accepted of 12
        turn(9, 1.0, steps=3, drafted=8),  # 6 of 8
        turn(5, 1.0, drafted=5),  # no steps: not counted
        turn(7, 1.0, steps=7),  # no drafted count: not counted
    ]
    assert acceptance_rate(turns) == pytest.approx((6 + 6) / (12 + 8))  # 0.6, not mean(0.5, 0.75)
    assert acceptance_rate([turn(5, 1.0, steps=5, drafted=0)]) is None  # AR: nothing drafted
    assert acceptance_rate([turn(5, 1.0, steps=5)]) is None
    assert acceptance_rate([]) is None
    records = [record(1, "a", "ar", [turn(5, 1.0, steps=5, drafted=0)]), record(1, "a", "pl", turns[:2]),
               record(2, "a", "pl", [turn(4, 1.0, steps=2, drafted=5)])]  # 2 of 5
    summary = summarize(records)
    assert summary.cell("pl", OVERALL).acceptance_rate == pytest.approx((6 + 6 + 2) / (12 + 8 + 5))
    assert summary.cell("ar", OVERALL).acceptance_rate is None


def test_perplexity_is_exp_of_nll_per_token_over_scored_turns():
    turns = [turn(4, 1.0, nll=2.0), turn(6, 1.0, nll=3.0), turn(10, 1.0)]  # the last was not scored
    assert perplexity(turns) == pytest.approx(math.exp((2.0 + 3.0) / (4 + 6)))  # e ** 0.5, not the mean of e ** (nll / n)
    assert perplexity([turn(0, 1.0, nll=0.0), turn(2, 1.0, nll=1.0)]) == pytest.approx(math.exp(0.5))
    assert perplexity([turn(0, 1.0, nll=0.0)]) is None
    assert perplexity([turn(3, 1.0)]) is None
    records = [record(1, "a", "ar", [turn(4, 1.0, nll=2.0)]), record(2, "a", "ar", [turn(6, 1.0, nll=3.0)]),
               record(1, "a", "pl", [turn(4, 1.0)])]
    summary = summarize(records)
    assert summary.cell("ar", "a").perplexity == pytest.approx(math.exp(0.5))
    assert summary.cell("pl", "a").perplexity is None


def test_agreement_is_agreed_over_compared_tokens_summed_over_records():
    records = [record(1, "a", "skip", [turn(4, 1.0)], agreed=3, compared=4),
               record(2, "a", "skip", [turn(6, 1.0)], agreed=5, compared=6),
               record(3, "a", "skip", [turn(6, 1.0)])]  # not compared (a sampling run)
    assert agreement(records) == pytest.approx((3 + 5) / (4 + 6))  # 0.8, not mean(0.75, 0.83)
    assert agreement(records[2:]) is None
    assert agreement([record(1, "a", "skip", [turn(0, 1.0)], agreed=0, compared=0)]) is None
    assert agreement([]) is None
    summary = summarize([record(1, "a", "ar", [turn(4, 1.0)]), *records])
    assert summary.cell("skip", OVERALL).agreement == pytest.approx(0.8)
    assert summary.cell("ar", OVERALL).agreement is None


def timed(tokens, seconds, prefill_s, prefill_tokens=1):
    return TurnResult(prompt_tokens=10, new_tokens=tokens, wall_s=seconds, token_ids=list(range(tokens)), text="x",
                      prefill_s=prefill_s, prefill_tokens=prefill_tokens)


def test_decode_only_speeds_leave_the_first_step_out():
    records = [
        # AR: 11 tokens in 2.0 s, 1.0 s of it the prefill -> decode 10 tokens / 1.0 s = 10 tok/s
        record(1, "a", "ar", [timed(11, 2.0, 1.0)]),
        # pl: its first step committed 3 tokens; 11 tokens in 1.5 s -> decode 8 tokens / 0.5 s = 16 tok/s
        record(1, "a", "pl", [timed(11, 1.5, 1.0, prefill_tokens=3)]),
        # a baseline that timed no prefill has no decode-only figures
        record(1, "a", "hf-greedy", [turn(11, 2.2)], backend="hf"),
    ]
    summary = summarize(records)
    ar, pl, hf = (summary.cell(m, OVERALL) for m in ("ar", "pl", "hf-greedy"))
    assert ar.decode_tokens_per_s == pytest.approx(10.0)
    assert pl.decode_tokens_per_s == pytest.approx(16.0)
    assert pl.speedup == pytest.approx(2.0 / 1.5)  # end to end: (11 / 1.5) / (11 / 2.0)
    assert pl.decode_speedup == pytest.approx(1.6)  # decode-only: 16 / 10
    assert pl.prefill_share == pytest.approx(1.0 / 1.5)
    assert summary.mean_category_speedup("pl", "decode_speedup") == pytest.approx(1.6)
    assert (hf.decode_tokens_per_s, hf.decode_speedup, hf.prefill_share) == (None, None, None)


def test_decode_speed_sums_over_turns():
    rec = record(1, "a", "ar", [timed(5, 1.0, 0.5), timed(9, 2.0, 1.0)])
    assert rec.decode_tokens_per_s == pytest.approx((4 + 8) / (0.5 + 1.0))


def test_the_fastest_plain_decoder_may_be_a_librarys_own_on_another_weight_type():
    records = [*speeds("ar", {1: 10}), *speeds("llama-greedy", {1: 11}), *speeds("llama-greedy@q4_0", {1: 20}),
               *speeds("ar@q4_0", {1: 19}), *speeds("copy-spec@q4_0", {1: 30}), *speeds("llama-prompt-lookup", {1: 99})]
    summary = summarize(records)
    assert summary.fastest_ar == "llama-greedy@q4_0"  # a lookup baseline is not plain decoding
    assert summary.cell("copy-spec@q4_0", OVERALL).speedup_fastest_ar == pytest.approx(1.5)
