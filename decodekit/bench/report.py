"""The report: a terminal table, report.md, results.jsonl and plots.

report.md is written last and atomically, so an interrupted run never leaves a report that
looks complete.
"""

from __future__ import annotations

import os
from pathlib import Path

from rich.console import Console
from rich.table import Table

from decodekit.bench.baselines import HF_BASELINES
from decodekit.bench.metrics import OVERALL, Summary
from decodekit.bench.plots import plot_speedup, plot_tau_histogram
from decodekit.bench.records import QuestionRecord, write_records


def method_label(method: str, backend: str) -> str:
    if backend == "hf":
        return f"{method} ({HF_BASELINES.get(method, 'transformers')})"
    if backend == "llama.cpp":
        return f"{method} (llama.cpp — a different backend)"
    return method


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "–" if value is None else f"{value:{spec}}{suffix}"


def speed_rows(summary: Summary, attribute: str, labels: bool = True) -> list[list[str]]:
    spec, suffix = (".2f", "×") if attribute == "speedup" else (".1f", "")
    rows = []
    for method in summary.methods:
        cells = [summary.cells.get((method, c)) for c in [*summary.categories, OVERALL]]
        row = [method_label(method, cells[-1].backend) if labels else method]
        row += [_fmt(getattr(cell, attribute) if cell else None, spec, suffix) for cell in cells]
        if attribute == "speedup":
            row.append(_fmt(summary.mean_category_speedup(method), spec, suffix))
        rows.append(row)
    return rows


def detail_rows(summary: Summary) -> list[list[str]]:
    rows = []
    for method in summary.methods:
        cell = summary.cell(method, OVERALL)
        hist = " ".join(f"{k}:{v}" for k, v in cell.accepted_hist.items()) or "–"
        identical = f"{cell.identical}/{cell.compared} ({cell.identical_rate:.0%})" if cell.compared else "–"
        split = " / ".join(f"{v:.0%}" for v in cell.time_split.values()) if cell.time_split else "–"
        rows.append([method, _fmt(cell.tau, ".2f"), hist, identical, split])
    return rows


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def render_markdown(summary: Summary, records: list[QuestionRecord], machine: dict, command: str) -> str:
    categories = [*summary.categories, OVERALL]
    questions = summary.cell(summary.methods[0], OVERALL).questions
    parts = [
        "# decodekit bench report",
        f"Command: `{command}`",
        f"{questions} questions; model `{machine.get('model', '?')}`.",
        "## Speedup vs decodekit AR\n\nRatio of mean per-question tokens/s (Spec-Bench's definition), same questions, one process.",
        _markdown_table(["method", *categories, "mean of categories"], speed_rows(summary, "speedup")),
        "## Tokens/s (mean per question)",
        _markdown_table(["method", *categories], speed_rows(summary, "tokens_per_s")),
        "## Acceptance, losslessness, time split (all categories)\n\n"
        "τ: tokens committed per verification step; histogram: tokens per step → steps; "
        "identical: greedy token ids equal decodekit AR's for every turn; time: drafting / model forward / bookkeeping.",
        _markdown_table(["method", "τ", "tokens per step", "identical to AR", "time draft / forward / other"], detail_rows(summary)),
        "## Divergences from AR",
        _divergence_section(records),
        "## Machine",
        _markdown_table(["", ""], [[k, str(v)] for k, v in machine.items()]),
        "Plots: `speedup.png`, `tau_histogram.png`; every answer: `results.jsonl`.",
    ]
    return "\n\n".join(parts) + "\n"


def _divergence_section(records: list[QuestionRecord]) -> str:
    diverged = [r for r in records if r.divergence is not None]
    if not diverged:
        compared = sum(1 for r in records if r.identical_to_ar is not None)
        return f"None: all {compared} compared outputs are identical to AR." if compared else "Not checked (sampling run)."
    rows = []
    for r in diverged:
        d = r.divergence
        verdict = "**BUG** (no tie)" if d.is_bug else "tie (numerics)"
        rows.append([str(r.question_id), r.category, r.method, str(d.turn + 1), str(d.position),
                     _fmt(d.ar_top2_gap, ".2e"), verdict])
    return _markdown_table(["question", "category", "method", "turn", "position", "AR top-2 gap", "verdict"], rows)


def print_terminal(summary: Summary, console: Console) -> None:
    table = Table(title="speedup vs decodekit AR (mean per-question tokens/s ratio)")
    for column in ["method", *summary.categories, OVERALL, "mean"]:
        table.add_column(column, justify="left" if column == "method" else "right")
    for row in speed_rows(summary, "speedup", labels=False):
        table.add_row(*row)
    console.print(table)
    details = Table(title="acceptance and losslessness")
    for column in ["method", "τ", "tokens per step", "identical to AR", "draft / forward / other"]:
        details.add_column(column)
    for row in detail_rows(summary):
        details.add_row(*row)
    console.print(details)


def write_report(out: Path, records: list[QuestionRecord], summary: Summary, machine: dict, command: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_records(out / "results.jsonl", records)
    plot_speedup(summary, out / "speedup.png")
    plot_tau_histogram(summary, out / "tau_histogram.png")
    partial = out / "report.md.partial"
    partial.write_text(render_markdown(summary, records, machine, command))
    os.replace(partial, out / "report.md")
