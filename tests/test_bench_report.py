"""report.md, the terminal tables and the plots, from synthetic records (no model)."""

import json

import pytest
from rich.console import Console

from decodekit.bench import report
from decodekit.bench.divergence import ENDED
from decodekit.bench.metrics import summarize
from decodekit.bench.plots import plot_speedup, plot_tau_histogram
from decodekit.bench.records import Divergence, QuestionRecord, TurnResult, read_records, write_records
from decodekit.bench.report import print_terminal, render_markdown, write_report
from decodekit.machine import machine_info, peak_rss_mb

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MACHINE = {"cpu": "TestCPU 9000", "logical_cores": 2, "torch": "2.13.0", "model": "tiny-llama"}
COMMAND = "decodekit bench --model tiny-llama --methods ar,prompt-lookup,hf-greedy"


def turn(tokens, seconds, steps=None, hist=None, nll=None):
    return TurnResult(prompt_tokens=10, new_tokens=tokens, wall_s=seconds, token_ids=list(range(tokens)), text="x",
                      steps=steps, accepted_hist=hist, nll=nll, draft_s=0.1 if steps else None,
                      forward_s=0.8 if steps else None, other_s=0.1 if steps else None)


def make_records():
    records = []
    for qid, category in [(1, "mt_bench"), (2, "mt_bench"), (3, "summarization")]:
        records.append(QuestionRecord(qid, category, "ar", "decodekit", [turn(10, 1.0, 10, {1: 10})]))
        records.append(QuestionRecord(qid, category, "prompt-lookup", "decodekit", [turn(10, 0.5, 4, {1: 2, 4: 2})],
                                      identical_to_ar=True))
        records.append(QuestionRecord(qid, category, "hf-greedy", "hf", [turn(10, 1.25)], identical_to_ar=True))
    records[1].identical_to_ar = False  # prompt-lookup on question 1
    records[1].divergence = Divergence(turn=0, position=5, ar_token=42, method_token=43, logit_gap=3e-4, tolerance=2e-2,
                                       is_bug=False, rank=1, drift=1e-4, faithful=True)
    records[8].identical_to_ar = False  # hf-greedy on question 3
    records[8].divergence = Divergence(turn=1, position=0, ar_token=7, method_token=ENDED, logit_gap=None, tolerance=None,
                                       is_bug=True, note="one side ended early")
    return records


@pytest.fixture()
def records():
    return make_records()


def test_markdown_names_the_command_machine_methods_and_categories(records):
    text = render_markdown(summarize(records), records, MACHINE, COMMAND)
    assert COMMAND in text
    for key, value in MACHINE.items():
        assert f"| {key} | {value} |" in text
    for label in ["ar (decodekit, the reference)", "| prompt-lookup |", "hf-greedy (transformers generate(), plain decoding)"]:
        assert label in text
    assert "| method | mt_bench | summarization | overall | mean of categories |" in text
    assert "questions per category: mt_bench 2, summarization 1, overall 3" in text


def test_markdown_tables_hold_the_numbers(records):
    text = render_markdown(summarize(records), records, MACHINE, COMMAND)
    assert "| prompt-lookup | 2.00× | 2.00× | 2.00× | 2.00× |" in text  # 20 vs 10 tok/s everywhere
    assert "0.80×" in text  # hf-greedy: 8 vs 10 tok/s
    assert "| prompt-lookup | 20.0 | 20.0 | 20.0 |" in text  # tokens/s
    assert "| prompt-lookup | 2.50 | 2.50 | 2.50 |" in text  # τ = 10 / 4
    assert "| prompt-lookup | 30 | 1.5 | 2.00× | 2.00× | 12 | 2.50 | – | 1:6 4:6 | 2/3 (67%) | 10% / 80% / 10% |" in text
    assert "| prompt-lookup | 1/2 (50%) | 1/1 (100%) | 2/3 (67%) |" in text
    assert "hf-greedy (transformers generate(), plain decoding) | 2/2 (100%) | 0/1 (0%), 1 BUG | 2/3 (67%), 1 BUG |" in text


def test_markdown_lists_divergences_as_tie_or_bug(records):
    text = render_markdown(summarize(records), records, MACHINE, COMMAND)
    assert "2 of the 6 compared outputs differ from AR; 1 of them are bugs." in text
    assert "Largest gap excused: 0.0003 logits (prompt-lookup, question 1, bound 0.02)." in text
    assert "| 1 | mt_bench | prompt-lookup | 1 | 5 | 42 | 43 | 0.0003 | 0.02 | 1 | 0.0001 | yes | numerics |" in text
    assert "| 3 | summarization | hf-greedy | 2 | 0 | 7 | (ended) | – | – | – | – | – | **BUG**: one side ended early |" \
        in text


def test_markdown_without_divergences_or_comparisons(records):
    clean = [r for r in records if r.divergence is None]
    assert "None: all 4 compared outputs are identical to AR." in render_markdown(summarize(clean), clean, {}, "c")
    sampled = [QuestionRecord(r.question_id, r.category, r.method, r.backend, r.turns) for r in records]
    assert "Not checked (sampling run)." in render_markdown(summarize(sampled), sampled, {}, "c")
    assert "No results" in render_markdown(summarize([]), [], {}, "c")


def test_markdown_escapes_table_separators():
    records = [QuestionRecord(1, "a|b", "ar", "decodekit", [turn(5, 1.0, 5, {1: 5})])]
    assert "| a\\|b |" in render_markdown(summarize(records), records, {"x": "1|2"}, "c")


def test_terminal_tables_show_every_method(records):
    console = Console(record=True, width=200)
    print_terminal(summarize(records), console)
    text = console.export_text()
    for needle in ["prompt-lookup", "hf-greedy (hf)", "mt_bench", "summarization", "2.00×", "2.50",
                   "2/3 (67%), 1 BUG"]:
        assert needle in text


def assert_png(path):
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 1000


def test_write_report_writes_every_file_and_report_last(records, tmp_path):
    out = tmp_path / "out"
    write_report(out, records, summarize(records), MACHINE, COMMAND)
    assert {p.name for p in out.iterdir()} == {"results.jsonl", "report.md", "speedup.png", "tau_histogram.png"}
    assert [r.to_json() for r in read_records(out / "results.jsonl")] == [r.to_json() for r in records]
    assert_png(out / "speedup.png")
    assert_png(out / "tau_histogram.png")
    assert COMMAND in (out / "report.md").read_text()
    assert (out / "report.md").stat().st_mtime_ns >= (out / "tau_histogram.png").stat().st_mtime_ns


def test_a_failed_plot_leaves_no_report(records, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.md").write_text("a report from an older run")

    def broken(summary, path):
        raise RuntimeError("plotting failed")

    monkeypatch.setattr(report, "plot_tau_histogram", broken)
    with pytest.raises(RuntimeError):
        write_report(out, records, summarize(records), MACHINE, COMMAND)
    assert not (out / "report.md").exists() and not (out / "report.md.partial").exists()


@pytest.mark.parametrize(
    "records",
    [
        [QuestionRecord(1, "qa", "ar", "decodekit", [turn(5, 1.0, 5, {1: 5})])],  # AR alone
        [QuestionRecord(1, "qa", "ar", "decodekit", [turn(5, 1.0, 5, {1: 5})]),
         QuestionRecord(1, "qa", "prompt-lookup", "decodekit", [turn(5, 0.5, 2, {2: 1, 3: 1})])],
        [QuestionRecord(1, "qa", "hf-greedy", "hf", [turn(5, 1.0)])],  # no AR, no steps: no speedup, no τ
    ],
)
def test_plots_work_with_one_method_and_one_category(records, tmp_path):
    summary = summarize(records)
    plot_speedup(summary, tmp_path / "speedup.png")
    plot_tau_histogram(summary, tmp_path / "tau.png")
    assert_png(tmp_path / "speedup.png")
    assert_png(tmp_path / "tau.png")


def test_machine_info_names_what_the_numbers_depend_on():
    info = machine_info("fp32", threads=2)
    for key in ["cpu", "logical_cores", "torch_threads", "ram_gb", "os", "python", "dtype", "torch", "transformers",
                "decodekit"]:
        assert info[key] not in (None, ""), key
    assert (info["dtype"], info["torch_threads"]) == ("fp32", 2)
    assert peak_rss_mb() > 10  # this process has imported torch


def test_records_keep_drafted_tokens_nll_and_agreement_through_results_jsonl(tmp_path):
    turns = [TurnResult(prompt_tokens=7, new_tokens=5, wall_s=0.5, token_ids=[1, 2, 3, 4, 5], text="hello", steps=2,
                        accepted_hist={1: 1, 4: 1}, drafted_tokens=6, nll=3.25, draft_s=0.1, forward_s=0.3, other_s=0.1),
             TurnResult(prompt_tokens=9, new_tokens=0, wall_s=0.1, token_ids=[], text="", nll=0.0)]
    written = [QuestionRecord(1, "qa", "layer-skip", "decodekit", turns, agreed_tokens=3, compared_tokens=8),
               QuestionRecord("q2", "qa", "ar", "decodekit", [turn(2, 1.0, 2, {1: 2})])]
    write_records(tmp_path / "results.jsonl", written)
    read = read_records(tmp_path / "results.jsonl")
    assert read == written
    first = read[0].turns[0]
    assert (first.drafted_tokens, first.nll, first.accepted_hist) == (6, 3.25, {1: 1, 4: 1})
    assert read[0].turns[1].nll == 0.0  # a scored empty answer stays scored
    assert (read[0].agreed_tokens, read[0].compared_tokens) == (3, 8)
    assert (read[1].turns[0].drafted_tokens, read[1].turns[0].nll, read[1].agreed_tokens, read[1].compared_tokens) == (
        None, None, None, None)
    assert QuestionRecord.from_dict(json.loads(written[0].to_json())) == written[0]


def test_records_written_before_these_fields_still_read():
    old = {"question_id": 1, "category": "qa", "method": "ar", "backend": "decodekit", "divergence": None,
           "identical_to_ar": None,
           "turns": [{"prompt_tokens": 3, "new_tokens": 2, "wall_s": 1.0, "token_ids": [4, 5], "text": "x", "steps": 2,
                      "accepted_hist": {"1": 2}, "draft_s": None, "forward_s": None, "other_s": None}]}
    record = QuestionRecord.from_dict(old)
    assert (record.turns[0].drafted_tokens, record.turns[0].nll) == (None, None)
    assert (record.agreed_tokens, record.compared_tokens) == (None, None)
    assert record.turns[0].accepted_hist == {1: 2}


def lossy_records(agreement=True):
    """AR: 4 tokens in 1 s and 6 in 1 s (mean 5 tok/s), nll 2.0 + 3.0 over 10 tokens: perplexity e ** 0.5 = 1.65.
    layer-skip: the same tokens in 0.5 s (10 tok/s: 2.00×), nll 6.0 + 4.0 over 10 tokens: perplexity e = 2.72;
    3 of AR's 4 tokens kept on question 1, none of its 6 on question 2: agreement 3 / 10 = 30.0%."""
    records = [
        QuestionRecord(1, "qa", "ar", "decodekit", [turn(4, 1.0, 4, {1: 4}, nll=2.0)]),
        QuestionRecord(1, "qa", "layer-skip[exit_layer=2]", "decodekit", [turn(4, 0.5, 4, {1: 4}, nll=6.0)],
                       agreed_tokens=3, compared_tokens=4),
        QuestionRecord(1, "qa", "prompt-lookup", "decodekit", [turn(4, 0.8, 2, {2: 2})], identical_to_ar=True),
        QuestionRecord(2, "qa", "ar", "decodekit", [turn(6, 1.0, 6, {1: 6}, nll=3.0)]),
        QuestionRecord(2, "qa", "layer-skip[exit_layer=2]", "decodekit", [turn(6, 0.5, 6, {1: 6}, nll=4.0)],
                       agreed_tokens=0, compared_tokens=6),
        QuestionRecord(2, "qa", "prompt-lookup", "decodekit", [turn(6, 1.2, 3, {2: 3})], identical_to_ar=True),
    ]
    if not agreement:  # a sampling run: nothing compared with AR
        for r in records:
            r.agreed_tokens = r.compared_tokens = None
    return records


def test_markdown_shows_what_lossy_methods_give_up():
    records = lossy_records()
    text = render_markdown(summarize(records), records, MACHINE, COMMAND)
    assert "## Lossy methods: what they give up" in text
    assert "| method | speedup vs AR | agreement with AR | perplexity (full model) |" in text
    assert "| layer-skip[exit_layer=2] | 2.00× | 30.0% | 2.72 |" in text
    assert "| ar | 1.00× | – | 1.65 |" in text
    assert "| prompt-lookup | 1.00× |" not in text.split("## Lossy methods")[1].split("##")[0]  # unscored: not listed
    sampled = lossy_records(agreement=False)
    text = render_markdown(summarize(sampled), sampled, MACHINE, COMMAND)
    assert "| layer-skip[exit_layer=2] | 2.00× | – | 2.72 |" in text


def test_markdown_has_no_lossy_section_without_a_lossy_method(records):
    assert "Lossy methods" not in render_markdown(summarize(records), records, MACHINE, COMMAND)
    # AR is scored whenever it runs beside a lossy method; on its own its perplexity is no section
    scored_ar = [r for r in lossy_records() if not r.method.startswith("layer-skip")]
    assert summarize(scored_ar).cell("ar", "overall").perplexity is not None
    assert "Lossy methods" not in render_markdown(summarize(scored_ar), scored_ar, MACHINE, COMMAND)


def test_markdown_names_the_fastest_ar_row(records):
    text = render_markdown(summarize(records), records, MACHINE, COMMAND)
    assert "vs fastest AR: against `ar`, the fastest plain-decoding row" in text
    # AR with the model in bf16 at 12.5 tok/s beats AR's 10
    records += [QuestionRecord(qid, category, "ar@bf16", "decodekit", [turn(10, 0.8, 10, {1: 10})])
                for qid, category in [(1, "mt_bench"), (2, "mt_bench"), (3, "summarization")]]
    text = render_markdown(summarize(records), records, MACHINE, COMMAND)
    assert "vs fastest AR: against `ar@bf16`, the fastest plain-decoding row" in text
    header = "| method | new tokens | wall s | speedup vs AR | vs fastest AR | steps | τ | acceptance |"
    assert header in text
    # prompt-lookup: 20 tok/s, 2.00× AR's 10 and 1.60× ar@bf16's 12.5
    assert "| prompt-lookup | 30 | 1.5 | 2.00× | 1.60× | 12 | 2.50 | – | 1:6 4:6 | 2/3 (67%) | 10% / 80% / 10% |" in text
    assert "| ar@bf16 | 30 | 2.4 | 1.25× | 1.00× | 30 | 1.00 | – | 1:30 | – | 10% / 80% / 10% |" in text
    assert "| ar (decodekit, the reference) | 30 | 3.0 | 1.00× | 0.80× | 30 | 1.00 |" in text
