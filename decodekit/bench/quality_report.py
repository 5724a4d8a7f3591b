"""bench-quality's report: a terminal table, report.md with sample outputs, results.jsonl."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from decodekit.bench.quality_runner import QualityRecord, RowSummary
from decodekit.bench.report import markdown_table

HEADER = ["row", "outputs", "rep-2", "rep-4", "distinct-1", "distinct-2", "tokens", "perplexity", "accuracy",
          "tok/s", "τ"]


def _cells(s: RowSummary) -> list[str]:
    accuracy = f"{s.accuracy:.0%} of {s.graded}" if s.accuracy is not None else "–"
    perplexity = f"{s.perplexity:.2f}" if s.perplexity is not None else "–"
    return [s.row, str(s.outputs), f"{s.rep_2:.3f}", f"{s.rep_4:.3f}", f"{s.distinct_1:.3f}", f"{s.distinct_2:.3f}",
            f"{s.mean_tokens:.0f}", perplexity, accuracy, f"{s.tokens_per_s:.1f}", f"{s.tau:.2f}"]


DRAFTS_HEADER = ["row", "drafts", "s per question (all drafts)", "drafts' distinct-1", "drafts' distinct-2",
                 "drafts' perplexity"]


def _draft_cells(s: RowSummary) -> list[str]:
    def fmt(value: float | None, spec: str) -> str:
        return "–" if value is None else format(value, spec)

    return [s.row, str(s.drafts), f"{s.wall_per_question:.2f}", fmt(s.drafts_distinct_1, ".3f"),
            fmt(s.drafts_distinct_2, ".3f"), fmt(s.drafts_perplexity, ".2f")]


def _several_drafts(summaries: list[RowSummary]) -> list[RowSummary]:
    return [s for s in summaries if s.drafts > 1]


def print_quality(summaries: list[RowSummary], console: Console) -> None:
    table = Table(*HEADER)
    for summary in summaries:
        table.add_row(*map(escape, _cells(summary)))  # a row's options in brackets are not rich markup
    console.print(table)
    if _several_drafts(summaries):
        drafts = Table(*DRAFTS_HEADER, title="rows with several drafts per question")
        for summary in _several_drafts(summaries):
            drafts.add_row(*map(escape, _draft_cells(summary)))
        console.print(drafts)


def write_quality_report(out: Path, records: list[QualityRecord], summaries: list[RowSummary], info: dict,
                         command: str, samples: int) -> None:
    with (out / "results.jsonl").open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(asdict(record), ensure_ascii=False) + "\n")
    (out / "summary.json").write_text(json.dumps({"info": info, "rows": [s.as_dict() for s in summaries]}, indent=2))
    parts = [
        "# decodekit bench-quality report",
        f"Command:\n\n```\n{command}\n```",
        "\n".join(f"- {key}: {value}" for key, value in info.items()),
        "rep-n: share of an output's word n-grams that repeat an earlier one (lower: less repetition), averaged "
        "over outputs; distinct-n: unique word n-grams over all n-grams across the row's outputs (higher: more "
        "varied); tokens: mean new tokens per output; perplexity: of the outputs under the scoring model, given "
        "the question (lower: more fluent, to that model); accuracy: the output's last number equals the GSM8K "
        "reference answer (math_reasoning questions only); tok/s: new tokens over wall time, prefill included; "
        "τ: tokens per forward step.",
        markdown_table(HEADER, [_cells(s) for s in summaries]),
    ]
    if _several_drafts(summaries):
        parts += [
            "## Rows with several drafts per question",
            "A search's n-best (beam, diverse-beam, superposed) or `samples=k` independent samples; the table above "
            "describes each row's best (or first) draft. Seconds per question cover all its drafts; drafts' "
            "distinct-n is computed within one question's drafts and averaged over questions (higher: the drafts "
            "differ more); drafts' perplexity is over every draft's tokens under the scoring model.",
            markdown_table(DRAFTS_HEADER, [_draft_cells(s) for s in _several_drafts(summaries)]),
        ]
    parts.append("## Sample outputs")
    questions = list(dict.fromkeys(r.question_id for r in records))[:samples]
    for question_id in questions:
        mine = [r for r in records if r.question_id == question_id]
        parts.append(f"### Question {question_id} ({mine[0].category})\n\n> " + mine[0].prompt.replace("\n", "\n> "))
        for record in mine:
            parts.append(f"**{record.row}** ({record.new_tokens} tokens):\n\n```\n{record.text.strip()}\n```")
    temporary = out / "report.md.tmp"
    temporary.write_text("\n\n".join(parts) + "\n", encoding="utf-8")
    os.replace(temporary, out / "report.md")
