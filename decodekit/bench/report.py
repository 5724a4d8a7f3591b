"""The report: a terminal table, report.md, results.jsonl and plots.

report.md is written last and atomically, so an interrupted run never leaves a report that
looks complete.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from decodekit.bench.baselines import BASELINES
from decodekit.bench.divergence import ENDED
from decodekit.bench.drift import MARGIN
from decodekit.bench.metrics import OVERALL, REFERENCE, Cell, Summary
from decodekit.bench.plots import plot_speedup, plot_tau_histogram
from decodekit.bench.records import QuestionRecord, write_records

REPORT = "report.md"
RESULTS = "results.jsonl"
SPEEDUP_PNG = "speedup.png"
TAU_PNG = "tau_histogram.png"


def method_label(method: str, backend: str) -> str:
    """A row's name, saying who ran it: speed ratios across backends compare more than loops."""
    if method == REFERENCE and backend == "decodekit":
        return f"{method} (decodekit, the reference)"
    if backend == "decodekit":
        return method
    if method in BASELINES:
        return f"{method} ({BASELINES[method]})"
    return f"{method} ({backend})"


def short_label(method: str, backend: str) -> str:
    """For narrow terminal tables: the backend in parentheses, only when it is not decodekit."""
    return method if backend == "decodekit" else f"{method} ({backend})"


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "–" if value is None else f"{value:{spec}}{suffix}"


def _fmt_identical(cell: Cell | None) -> str:
    if cell is None or not cell.compared:
        return "–"
    text = f"{cell.identical}/{cell.compared} ({cell.identical_rate:.0%})"
    return text + (f", {cell.bugs} BUG" if cell.bugs else "")


def _fmt_split(cell: Cell) -> str:
    return " / ".join(f"{v:.0%}" for v in cell.time_split.values()) if cell.time_split else "–"


def _fmt_hist(cell: Cell) -> str:
    return " ".join(f"{k}:{v}" for k, v in cell.accepted_hist.items()) or "–"


# What each per-category table shows, and how one cell reads.
CATEGORY_METRICS: dict[str, Callable[[Cell | None], str]] = {
    "speedup": lambda c: _fmt(c.speedup if c else None, ".2f", "×"),
    "decode_speedup": lambda c: _fmt(c.decode_speedup if c else None, ".2f", "×"),
    "tokens_per_s": lambda c: _fmt(c.tokens_per_s if c else None, ".1f"),
    "tau": lambda c: _fmt(c.tau if c else None, ".2f"),
    "identical": _fmt_identical,
}


def category_rows(summary: Summary, metric: str, labels: bool = True) -> list[list[str]]:
    """Methods as rows, categories then OVERALL as columns (and the mean of categories for speedup)."""
    show = CATEGORY_METRICS[metric]
    rows = []
    for method in summary.methods:
        overall = summary.cell(method, OVERALL)
        row = [(method_label if labels else short_label)(method, overall.backend)]
        row += [show(summary.get(method, c)) for c in [*summary.categories, OVERALL]]
        if metric in ("speedup", "decode_speedup"):
            row.append(_fmt(summary.mean_category_speedup(method, metric), ".2f", "×"))
        rows.append(row)
    return rows


def _overall_rows(summary: Summary, labels: bool, columns: Callable[[Cell], list[str]]) -> list[list[str]]:
    """One row per method over all categories: its label, then `columns` of its overall cell."""
    return [[(method_label if labels else short_label)(method, cell.backend), *columns(cell)]
            for method in summary.methods for cell in [summary.cell(method, OVERALL)]]


def detail_rows(summary: Summary, labels: bool = True) -> list[list[str]]:
    """Steps, τ, histogram, identity and time split per method."""
    return _overall_rows(summary, labels, lambda cell: [
        str(cell.new_tokens), f"{cell.wall_s:.1f}", _fmt(cell.speedup, ".2f", "×"),
        _fmt(cell.speedup_fastest_ar, ".2f", "×"), "–" if cell.steps is None else str(cell.steps),
        _fmt(cell.tau, ".2f"), _fmt(cell.acceptance_rate, ".0%"), _fmt_hist(cell), _fmt_identical(cell),
        _fmt_split(cell)])


DETAIL_HEADER = ["method", "new tokens", "wall s", "speedup vs AR", "vs fastest AR", "steps", "τ", "acceptance",
                 "tokens per step: steps", "identical to AR", "time draft / forward / other"]


def prefill_rows(summary: Summary, labels: bool = True) -> list[list[str]]:
    """End to end next to decode-only, per method."""
    return _overall_rows(summary, labels, lambda cell: [
        _fmt(cell.tokens_per_s, ".1f"), _fmt(cell.speedup, ".2f", "×"), _fmt(cell.speedup_fastest_ar, ".2f", "×"),
        _fmt(cell.decode_tokens_per_s, ".1f"), _fmt(cell.decode_speedup, ".2f", "×"),
        _fmt(cell.decode_speedup_fastest_ar, ".2f", "×"), _fmt(cell.prefill_share, ".0%")])


PREFILL_HEADER = ["method", "tok/s", "speedup vs AR", "vs fastest AR", "decode tok/s", "decode speedup vs AR",
                  "decode vs fastest AR", "time in prefill"]


def divergence_rows(records: list[QuestionRecord]) -> list[list[str]]:
    rows = []
    for r in records:
        d = r.divergence
        if d is None:
            continue
        faithful = {True: "yes", False: "**no**", None: "–"}[d.faithful]
        rows.append([str(r.question_id), r.category, r.method, str(d.turn + 1), str(d.position),
                     _token(d.ar_token), _token(d.method_token), _fmt(d.logit_gap, ".3g"), _fmt(d.tolerance, ".3g"),
                     "–" if d.rank is None else str(d.rank), _fmt(d.drift, ".3g"), faithful,
                     f"**BUG**: {_escape(d.note)}" if d.is_bug else "numerics"])
    return rows


def _token(token: int) -> str:
    return "(ended)" if token == ENDED else str(token)


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(_escape(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_escape(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def render_markdown(summary: Summary, records: list[QuestionRecord], machine: dict, command: str,
                    forms: list[dict] | None = None) -> str:
    """The whole report.md; `records` supply the divergence list (it needs question ids);
    `forms`: the model forms the rows ran on, with their perplexity (bench/forms.py)."""
    if not summary.methods:
        return f"# decodekit bench report\n\nCommand:\n\n```\n{command}\n```\n\nNo results were recorded.\n"
    categories = [*summary.categories, OVERALL]
    per_category = ", ".join(f"{c} {_questions(summary, c)}" for c in categories)
    parts = [
        "# decodekit bench report",
        f"Command:\n\n```\n{command}\n```",
        f"Model `{machine.get('model', '?')}`; questions per category: {per_category}.",
        "## Speedup vs decodekit AR\n\n"
        "Ratio of mean per-question tokens/s (Spec-Bench's definition), on the same questions, in one "
        "process; `overall` pools every question, the last column is the mean of the category speedups.",
        markdown_table(["method", *categories, "mean of categories"], category_rows(summary, "speedup")),
        "## Decode-only speedup vs decodekit AR\n\n"
        "The same ratio with each turn's first step left out: the prompt's prefill, which every method pays "
        "alike, and the tokens that step committed.",
        markdown_table(["method", *categories, "mean of categories"], category_rows(summary, "decode_speedup")),
        "## Prefill and decode, all categories\n\n"
        "End to end next to decode-only (tokens after each turn's first step over the time after it); "
        "time in prefill: the first steps' share of the wall time.",
        markdown_table(PREFILL_HEADER, prefill_rows(summary)),
        "## Tokens/s (mean per question)",
        markdown_table(["method", *categories], category_rows(summary, "tokens_per_s")),
        "## τ: tokens committed per verification step\n\n"
        "New tokens over verification steps; plain decoding commits 1 per step; – : the method does not "
        "report steps.",
        markdown_table(["method", *categories], category_rows(summary, "tau")),
        "## Identical to AR\n\n"
        "Questions whose greedy token ids equal decodekit AR's in every turn.",
        markdown_table(["method", *categories], category_rows(summary, "identical")),
        "## All categories: speedups, steps, acceptance, time split\n\n"
        f"vs fastest AR: against `{summary.fastest_ar}`, the fastest plain-decoding row (decodekit's AR or a "
        "library's own greedy decoding, on any model form: `NAME@VARIANT` rows run on the model in another dtype "
        "or weight type). Acceptance: accepted draft tokens over drafted ones. "
        "Tokens per step: steps, how many verification steps committed that many tokens. "
        "Time: drafting / model forward / bookkeeping, as shares of their sum.",
        markdown_table(DETAIL_HEADER, detail_rows(summary)),
        *_lossy_section(summary),
        *_forms_section(forms),
        "## Divergences from AR",
        _divergence_section(records),
        "## Machine",
        markdown_table(["", ""], [[str(k), str(v)] for k, v in machine.items()]),
        f"Plots: `{SPEEDUP_PNG}`, `{TAU_PNG}`; every answer: `{RESULTS}`.",
    ]
    return "\n\n".join(parts) + "\n"


def _lossy_section(summary: Summary) -> list[str]:
    """What lossy methods (layer-skip) give up, next to AR: empty when none ran."""
    scored = [m for m in summary.methods if summary.cell(m, OVERALL).perplexity is not None]
    if all(m == REFERENCE for m in scored):
        return []
    rows = [[m, _fmt(summary.cell(m, OVERALL).speedup, ".2f", "×"), _fmt(summary.cell(m, OVERALL).agreement, ".1%"),
             _fmt(summary.cell(m, OVERALL).perplexity, ".2f")] for m in scored]
    return ["## Lossy methods: what they give up\n\n"
            "Agreement: the share of AR's greedy tokens a method reproduced before its first divergence in each "
            "turn. Perplexity: of each method's own answers under the full model (AR's for comparison).",
            markdown_table(["method", "speedup vs AR", "agreement with AR", "perplexity (full model)"], rows)]


def _forms_section(forms: list[dict] | None) -> list[str]:
    """What each model form (the loaded one and every @VARIANT) is, and what it costs in quality."""
    if not forms:
        return []
    rows = [[f["form"], f["identity"], f"{f['perplexity']:.3f}", f["quality"]] for f in forms]
    return ["## Model forms: what each weight type or dtype costs in quality\n\n"
            "Perplexity of a fixed text (the copy-heavy set's ten rewriting texts, CPython docstrings) under each form "
            "the rows ran on; `NAME@VARIANT` rows ran on that form, and were judged against `ar@VARIANT`.",
            markdown_table(["form", "model", "perplexity", "quality"], rows)]


def _questions(summary: Summary, category: str) -> int:
    return max(cell.questions for (_, c), cell in summary.cells.items() if c == category)


def _divergence_section(records: list[QuestionRecord]) -> str:
    rows = divergence_rows(records)
    if not rows:
        compared = sum(1 for r in records if r.identical_to_ar is not None)
        if not compared:
            return "Not checked (sampling run)."
        return f"None: all {compared} compared outputs are identical to AR."
    bugs = sum(1 for r in records if r.divergence is not None and r.divergence.is_bug)
    excused = [(d.logit_gap, d.tolerance, r) for r in records
               if (d := r.divergence) is not None and not d.is_bug and d.logit_gap is not None]
    largest = max(excused, key=lambda entry: entry[0], default=None)
    compared = sum(1 for r in records if r.identical_to_ar is not None)
    intro = (f"{len(rows)} of the {compared} compared outputs differ from AR; {bugs} of them are bugs. At the first "
             "divergent position the judge checks that the method committed what its verifier's logits dictated "
             "(faithful; – for a library's own decoding, which has no verifier to witness), that no gap from AR's "
             "top token to its runners-up moved by more than the bound between AR's own row and the verifier's "
             "(drift), and that AR's gap (its logit for its own token minus for the method's) is within the bound: "
             f"{MARGIN:g} times the largest gap drift measured for this backend and form (bench/data/drift.json). Rank: the "
             "method token's place in AR's row (0 is AR's own). Turns count from 1, positions from 0 within the "
             "turn's generated tokens; turns after the first differing one are not compared, since their prompts "
             "differ.")
    if largest is not None:
        gap, bound, record = largest
        intro += (f" Largest gap excused: {gap:.3g} logits ({record.method}, question {record.question_id}, bound "
                  f"{bound:.3g}).")
    header = ["question", "category", "method", "turn", "position", "AR token", "method token", "AR gap", "bound",
              "rank", "drift", "faithful", "verdict"]
    return intro + "\n\n" + markdown_table(header, rows)


def print_terminal(summary: Summary, console: Console) -> None:
    if not summary.methods:
        console.print("no results")
        return
    table = Table(title="speedup vs decodekit AR (ratio of mean per-question tokens/s)")
    for column in ["method", *summary.categories, OVERALL, "mean"]:
        table.add_column(escape(column), justify="left" if column == "method" else "right")
    for row in category_rows(summary, "speedup", labels=False):
        table.add_row(*map(escape, row))  # names are data, not rich markup
    console.print(table)
    details = Table(title="all categories: acceptance and losslessness")
    # A terminal is narrower than report.md: the histogram and the time split stay there.
    shown = [i for i, c in enumerate(DETAIL_HEADER) if c not in ("tokens per step: steps", "time draft / forward / other")]
    for i in shown:
        details.add_column(DETAIL_HEADER[i], justify="left" if i == 0 else "right")
    for row in detail_rows(summary, labels=False):
        details.add_row(*(escape(row[i]) for i in shown))
    console.print(details)


def write_report(out_dir: Path, records: list[QuestionRecord], summary: Summary, machine: dict, command: str,
                 forms: list[dict] | None = None) -> None:
    """results.jsonl, the plots, then report.md last, via a temporary file and a rename."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # An older report beside newer results would pass for their report if a plot fails below.
    (out_dir / REPORT).unlink(missing_ok=True)
    write_records(out_dir / RESULTS, records)
    plot_speedup(summary, out_dir / SPEEDUP_PNG)
    plot_tau_histogram(summary, out_dir / TAU_PNG)
    partial = out_dir / (REPORT + ".partial")
    partial.write_text(render_markdown(summary, records, machine, command, forms), encoding="utf-8")
    os.replace(partial, out_dir / REPORT)
