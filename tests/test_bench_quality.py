"""`decodekit bench-quality` and `decodekit bench --strategy`, end to end on a tiny model."""

from __future__ import annotations

import json

import pytest
from tiny import save_tiny_model
from typer.testing import CliRunner

from decodekit.bench.quality import QualityRow, check_row, distinct_n, final_number, is_correct, rep_n
from decodekit.cli import app
from decodekit.errors import DecodekitError
from decodekit.methods import parse_method

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return str(save_tiny_model(tmp_path_factory.mktemp("quality") / "tiny"))


def test_rows_split_sampling_settings_from_method_options():
    row = QualityRow.from_spec(parse_method("dola[dola_layers=low,temperature=1.0,top_p=0.9,drafter=prompt-lookup]"))
    assert (row.method, row.method_options, row.sampling, row.drafter) == (
        "dola", {"dola_layers": "low"}, {"temperature": 1.0, "top_p": 0.9}, "prompt-lookup")


def test_repetition_and_diversity_by_hand():
    assert rep_n("the cat the cat the cat", 2) == pytest.approx(1 - 2 / 5)  # (the cat)(cat the) repeat: 2 of 5 unique
    assert rep_n("one two three", 4) == 0.0
    assert distinct_n(["a a a", "b"], 1) == pytest.approx(2 / 4)


@pytest.mark.parametrize(("output", "reference", "expected"), [
    ("So the total is 1,000 dollars.", "...\n#### 1000", True),
    ("The answer is 5.00", "#### 5", True),
    ("I think 4, no wait, 6", "#### 4", False),
    ("no number at all", "#### 4", False),
    ("42", "a reference without a final answer", None),
])
def test_gsm8k_grading(output, reference, expected):
    assert is_correct(output, reference) is expected


def test_final_number_takes_the_last_one():
    assert final_number("3 apples and -2.5 pears") == "-2.5"


def test_bench_quality_writes_a_report_that_agrees_with_its_records(tiny_folder, tmp_path, isolated_cache):
    dataset = tmp_path / "q.jsonl"
    lines = [{"question_id": 1, "category": "writing", "turns": ["abc abc abc"]},
             {"question_id": 2, "category": "math_reasoning", "turns": ["2 + 3 = ?"], "reference": ["2+3=5\n#### 5"]}]
    dataset.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "out"
    result = runner.invoke(app, ["bench-quality", "--model", tiny_folder, "--scorer", tiny_folder, "--dataset",
                                 str(dataset), "--categories", "writing,math_reasoning", "--per-category", "1",
                                 "--max-new-tokens", "12", "--rows", "ar,dola[dola_layers=low],mirostat[temperature=1.0]",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())["rows"]
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [row["row"] for row in summary] == ["ar", "dola[dola_layers=low]", "mirostat[temperature=1.0]"]
    for row in summary:
        mine = [r for r in records if r["row"] == row["row"]]
        assert len(mine) == row["outputs"] == 2
        assert row["distinct_2"] == pytest.approx(distinct_n([r["text"] for r in mine], 2))
        assert row["graded"] == 1  # only the math question has a reference
        assert row["perplexity"] > 1
    report = (out / "report.md").read_text()
    assert "| dola[dola_layers=low] |" in report and "## Sample outputs" in report


def test_bench_strategy_checks_drafters_against_the_strategy_alone(tiny_folder, tmp_path, isolated_cache):
    dataset = tmp_path / "q.jsonl"
    dataset.write_text(json.dumps({"question_id": 1, "category": "qa", "turns": ["abcabcabcabcabcabc"]}) + "\n")
    out = tmp_path / "out"
    result = runner.invoke(app, ["bench", "--model", tiny_folder, "--dataset", str(dataset), "--max-new-tokens", "24",
                                 "--strategy", "dola[dola_layers=low]", "--methods", "ar,prompt-lookup,token-recycling",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    drafted = [r for r in records if r["method"] != "ar"]
    assert len(drafted) == 2 and all(r["identical_to_ar"] for r in drafted)


def test_bench_quality_reports_several_drafts_per_question(tiny_folder, tmp_path, isolated_cache):
    """Search rows keep their n-best, samples=k rows their k samples; the drafts table agrees."""
    dataset = tmp_path / "q.jsonl"
    lines = [{"question_id": i, "category": "writing", "turns": [f"tell me about {word}"]}
             for i, word in enumerate(["rain", "snow"])]
    dataset.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "out"
    rows = "beam[num_beams=3],superposed[num_drafts=3],ar[temperature=1.0,top_p=0.9,samples=3]"
    result = runner.invoke(app, ["bench-quality", "--model", tiny_folder, "--scorer", tiny_folder, "--dataset",
                                 str(dataset), "--categories", "writing", "--per-category", "2",
                                 "--max-new-tokens", "10", "--rows", rows, "--out", str(out)])
    assert result.exit_code == 0, result.output
    summary = {row["row"]: row for row in json.loads((out / "summary.json").read_text())["rows"]}
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    for label, row in summary.items():
        mine = [r for r in records if r["row"] == label]
        assert row["drafts"] == 3 and all(len(r["drafts"]) == 3 for r in mine)
        assert row["drafts_distinct_2"] == pytest.approx(sum(distinct_n(r["drafts"], 2) for r in mine) / 2)
        assert row["drafts_perplexity"] > 1
        assert row["wall_per_question"] == pytest.approx(sum(r["wall_s"] for r in mine) / 2)
    samples = [r for r in records if r["row"].endswith("samples=3]")]
    assert all(r["text"] == r["drafts"][0] for r in samples)
    assert "## Rows with several drafts per question" in (out / "report.md").read_text()


def test_samples_need_sampling():
    row = QualityRow.from_spec(parse_method("ar[samples=3]"))
    with pytest.raises(DecodekitError, match="samples=3 needs sampling"):
        check_row(row)
