"""`decodekit bench` end to end on a tiny model saved to disk, and its error handling."""

import json

import pytest
from tiny import save_tiny_model, tiny_backend
from typer.testing import CliRunner

from decodekit.bench.dataset import Question
from decodekit.bench.records import TurnResult
from decodekit.bench.runner import MethodRunner, run_question
from decodekit.cli import app
from decodekit.methods import parse_method

runner = CliRunner()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture()
def dataset(tmp_path):
    rows = [
        {"question_id": 1, "category": "writing", "turns": ["abc abc abc", "again: abc abc"]},
        {"question_id": 2, "category": "summarization", "turns": ["one two one two one two"]},
        {"question_id": 3, "category": "summarization", "turns": ["x y z x y z"]},
    ]
    path = tmp_path / "q.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


def test_end_to_end_writes_every_output(model_dir, dataset, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, ["bench", "--model", str(model_dir), "--dataset", str(dataset), "--max-new-tokens", "12",
                                 "--methods", "ar,prompt-lookup,hf-greedy,hf-prompt-lookup", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} == {"results.jsonl", "report.md", "speedup.png", "tau_histogram.png"}
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(records) == 3 * 4
    assert {r["category"] for r in records} == {"mt_bench", "summarization"}
    assert all(len(r["turns"]) == (2 if r["question_id"] == 1 else 1) for r in records)
    # greedy on the same model: every method reproduces AR exactly
    assert all(r["identical_to_ar"] for r in records if r["method"] != "ar")
    report = (out / "report.md").read_text()
    for needle in ["prompt-lookup", "hf-greedy", "mt_bench", "summarization", "decodekit bench", "Machine"]:
        assert needle in report
    assert (out / "speedup.png").stat().st_size > 1000


def test_multi_turn_feeds_the_methods_own_answer_back():
    backend = tiny_backend("qwen2")
    prompts = []

    def fake(prompt_ids):
        prompts.append(prompt_ids)
        return TurnResult(len(prompt_ids), 1, 0.1, [5], "ANSWER-ONE" if len(prompts) == 1 else "two")

    record, turn_prompts = run_question(Question(7, "mt_bench", ["first?", "second?"]), parse_method("ar"),
                                        MethodRunner(fake), backend, repeats=1)
    assert len(record.turns) == 2 and turn_prompts == prompts
    second = backend.tokenizer.decode(prompts[1])
    assert "first?" in second and "ANSWER-ONE" in second and second.index("ANSWER-ONE") < second.index("second?")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--methods", "ar,warp-drive"], "unknown method"),
        (["--categories", "poetry"], "unknown category"),
        (["--per-category", "0"], ">= 1"),
        (["--dataset", "/nonexistent/q.jsonl"], "not found"),
        (["--max-new-tokens", "0"], "max_new_tokens"),
    ],
)
def test_bad_input_exits_2_without_a_report(model_dir, dataset, tmp_path, args, message):
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.md").write_text("an old report")
    base = ["bench", "--model", str(model_dir), "--dataset", str(dataset), "--out", str(out)]
    result = runner.invoke(app, base + args)
    assert result.exit_code == 2
    assert message in result.output
    assert not (out / "report.md").exists() or (out / "report.md").read_text() == "an old report"


def test_model_that_fails_to_load_exits_2(dataset, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    result = runner.invoke(app, ["bench", "--model", str(broken), "--dataset", str(dataset), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "error:" in result.output
    assert not (tmp_path / "o" / "report.md").exists()


def test_hf_assisted_needs_and_uses_a_draft(model_dir, dataset, tmp_path):
    base = ["bench", "--model", str(model_dir), "--dataset", str(dataset), "--max-new-tokens", "8",
            "--categories", "summarization", "--methods", "ar,hf-assisted"]
    missing = runner.invoke(app, base + ["--out", str(tmp_path / "a")])
    assert missing.exit_code == 2 and "--draft" in missing.output
    result = runner.invoke(app, base + ["--draft", str(model_dir), "--out", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (tmp_path / "b" / "results.jsonl").read_text().splitlines()]
    assert all(r["identical_to_ar"] for r in records if r["method"] == "hf-assisted")


def test_strict_exits_1_when_a_verifier_commits_what_its_logits_did_not_dictate(model_dir, dataset, tmp_path,
                                                                                 monkeypatch):
    import torch

    import decodekit.loop
    from decodekit.types import VerifyResult

    args = ["bench", "--model", str(model_dir), "--dataset", str(dataset), "--max-new-tokens", "12", "--methods",
            "ar,prompt-lookup", "--strict"]
    assert runner.invoke(app, [*args, "--out", str(tmp_path / "honest")]).exit_code == 0
    honest = decodekit.loop.verify

    def runner_up_when_drafting(draft, logits, sampling, rng, position):
        """Wrong only where there is a draft, so AR (which never drafts) stays right."""
        if not draft.tokens:
            return honest(draft, logits, sampling, rng, position)
        return VerifyResult([], [int(torch.topk(logits[0], 2).indices[1])])

    monkeypatch.setattr(decodekit.loop, "verify", runner_up_when_drafting)
    out = tmp_path / "broken"
    result = runner.invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 1, result.output
    assert "numerics cannot explain (--strict)" in result.stderr and "unfaithful" in result.stderr
    assert "**BUG**: unfaithful" in (out / "report.md").read_text()  # the report is written all the same
