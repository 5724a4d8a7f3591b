"""The benchmark's arithmetic and checks, on synthetic records (no model)."""

import json

import pytest
import torch

from decodekit.bench.dataset import load_questions
from decodekit.bench.divergence import TIE_TOLERANCE, check_record, first_divergence, top2_gap
from decodekit.bench.metrics import OVERALL, summarize
from decodekit.bench.records import QuestionRecord, TurnResult, read_records, write_records
from decodekit.bench.report import render_markdown
from decodekit.errors import DecodekitError


def turn(tokens: int, seconds: float, steps=None, hist=None, ids=None) -> TurnResult:
    return TurnResult(prompt_tokens=10, new_tokens=tokens, wall_s=seconds, token_ids=ids or list(range(tokens)),
                      text="x", steps=steps, accepted_hist=hist, draft_s=0.1 if steps else None,
                      forward_s=0.8 if steps else None, other_s=0.1 if steps else None)


def record(qid, category, method, turns, backend="decodekit"):
    return QuestionRecord(qid, category, method, backend, turns)


RECORDS = [
    # category a: AR 10 and 20 tok/s (mean 15); PL 20 and 40 (mean 30) -> 2.0x
    record(1, "a", "ar", [turn(10, 1.0, 10, {1: 10})]),
    record(2, "a", "ar", [turn(20, 1.0, 20, {1: 20})]),
    record(1, "a", "pl", [turn(10, 0.5, 4, {1: 2, 4: 2})]),
    record(2, "a", "pl", [turn(20, 0.5, 5, {4: 5})]),
    # category b: AR 10 tok/s over two turns; PL 15 tok/s -> 1.5x
    record(3, "b", "ar", [turn(5, 0.5, 5, {1: 5}), turn(5, 0.5, 5, {1: 5})]),
    record(3, "b", "pl", [turn(6, 0.4, 3, {2: 3}), turn(9, 0.6, 3, {3: 3})]),
    record(3, "b", "hf", [turn(10, 2.0)], backend="hf"),
]


def test_speedup_is_ratio_of_mean_per_question_speed():
    summary = summarize(RECORDS)
    assert summary.cell("pl", "a").speedup == pytest.approx(2.0)
    assert summary.cell("pl", "b").speedup == pytest.approx(1.5)
    # overall: mean over the 3 questions: AR (10 + 20 + 10) / 3, PL (20 + 40 + 15) / 3
    assert summary.cell("pl", OVERALL).speedup == pytest.approx(75 / 40)
    assert summary.mean_category_speedup("pl") == pytest.approx(1.75)
    assert summary.cell("hf", "b").speedup == pytest.approx(0.5)
    assert summary.cell("ar", "a").tokens_per_s == pytest.approx(15.0)


def test_tau_and_histogram():
    summary = summarize(RECORDS)
    cell = summary.cell("pl", OVERALL)
    assert cell.tau == pytest.approx((10 + 20 + 6 + 9) / (4 + 5 + 3 + 3))
    assert cell.accepted_hist == {1: 2, 2: 3, 3: 3, 4: 7}
    assert summary.cell("ar", OVERALL).tau == pytest.approx(1.0)
    assert summary.cell("hf", OVERALL).tau is None
    assert summary.cell("pl", OVERALL).time_split == pytest.approx({"draft": 0.1, "forward": 0.8, "other": 0.1})


@pytest.mark.parametrize(
    "ar, other, expected",
    [([1, 2, 3], [1, 2, 3], None), ([1, 2, 3], [1, 5, 3], 1), ([1, 2], [1, 2, 3], 2), ([1, 2, 3], [1], 1), ([], [4], 0)],
)
def test_first_divergence(ar, other, expected):
    assert first_divergence(ar, other) == expected


def test_top2_gap():
    assert top2_gap(torch.tensor([0.5, 3.0, 2.75])) == pytest.approx(0.25)


def test_divergence_detector_tells_ties_from_bugs_and_stops_at_first_differing_turn():
    ar = record(1, "a", "ar", [turn(3, 1, 3, {1: 3}, ids=[1, 2, 3]), turn(3, 1, 3, {1: 3}, ids=[4, 5, 6])])
    same_first = record(1, "a", "pl", [turn(3, 1, 2, {1: 1, 2: 1}, ids=[1, 2, 3]), turn(3, 1, 2, {1: 1, 2: 1}, ids=[4, 9, 9])])
    asked = []

    def gap(turn_index, position):
        asked.append((turn_index, position))
        return TIE_TOLERANCE / 10

    check_record(ar, same_first, gap)
    assert asked == [(1, 1)]
    assert same_first.identical_to_ar is False
    assert (same_first.divergence.turn, same_first.divergence.position) == (1, 1)
    assert (same_first.divergence.ar_token, same_first.divergence.method_token) == (5, 9)
    assert not same_first.divergence.is_bug

    differs_early = record(1, "a", "pl", [turn(3, 1, 2, {1: 1}, ids=[1, 7, 7]), turn(3, 1, 2, {1: 1}, ids=[0, 0, 0])])
    check_record(ar, differs_early, lambda t, p: 2.5)
    assert (differs_early.divergence.turn, differs_early.divergence.position) == (0, 1)
    assert differs_early.divergence.is_bug

    identical = record(1, "a", "pl", [turn(3, 1, ids=[1, 2, 3]), turn(3, 1, ids=[4, 5, 6])])
    check_record(ar, identical, lambda t, p: pytest.fail("no divergence, no gap needed"))
    assert identical.identical_to_ar is True and identical.divergence is None


def test_records_round_trip(tmp_path):
    write_records(tmp_path / "r.jsonl", RECORDS)
    again = read_records(tmp_path / "r.jsonl")
    assert [r.to_json() for r in again] == [r.to_json() for r in RECORDS]


def test_report_names_everything():
    records = [r for r in RECORDS]
    text = render_markdown(summarize(records), records, {"cpu": "TestCPU 9000", "model": "tiny"}, "decodekit bench --x")
    for needle in ["decodekit bench --x", "TestCPU 9000", "pl", "hf", "| a |", "2.00×", "1.50×"]:
        assert needle in text


def write_jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r) if not isinstance(r, str) else r for r in rows))
    return str(path)


def test_dataset_groups_mt_bench_and_takes_first_n(tmp_path):
    path = write_jsonl(tmp_path / "q.jsonl", [
        {"question_id": 1, "category": "writing", "turns": ["a", "b"]},
        {"question_id": 2, "category": "coding", "turns": ["c"]},
        {"question_id": 3, "category": "qa", "turns": ["d"]},
        {"question_id": 4, "category": "qa", "turns": ["e"]},
    ])
    questions = load_questions(path, per_category=1)
    assert [(q.question_id, q.category, q.subcategory) for q in questions] == [(1, "mt_bench", "writing"), (3, "qa", None)]
    assert [q.question_id for q in load_questions(path, categories=["qa"])] == [3, 4]


@pytest.mark.parametrize(
    "rows, kwargs, message",
    [
        (["{not json"], {}, "line 1 is not valid JSON"),
        ([{"question_id": 1, "turns": ["a"]}], {}, "lacks category"),
        ([{"question_id": 1, "category": "qa", "turns": []}], {}, "turns"),
        ([{"question_id": 1, "category": "qa", "turns": ["a"]}], {"categories": ["poetry"]}, "unknown category poetry"),
        ([{"question_id": 1, "category": "qa", "turns": ["a"]}], {"per_category": 0}, ">= 1"),
        ([], {}, "no questions"),
    ],
)
def test_dataset_errors(tmp_path, rows, kwargs, message):
    path = write_jsonl(tmp_path / "q.jsonl", rows)
    with pytest.raises(DecodekitError, match=message):
        load_questions(path, **kwargs)


def test_missing_dataset_file(tmp_path):
    with pytest.raises(DecodekitError, match="not found"):
        load_questions(str(tmp_path / "nope.jsonl"))


def test_spec_bench_has_six_categories():
    try:
        questions = load_questions("spec-bench")
    except DecodekitError as error:
        pytest.fail(f"Spec-Bench should be in the workspace's shared/data: {error}")
    assert sorted({q.category for q in questions}) == sorted(["mt_bench", "translation", "summarization", "qa", "math_reasoning", "rag"])
    assert sum(len(q.turns) == 2 for q in questions) == 80
