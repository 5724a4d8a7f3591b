"""The report of `decodekit bench-structured`: results.jsonl (one line per schema file), report.md
(per-subset table, llguidance's published figures beside ours, the instances judged wrong) and
expected_failures.txt (this run's refused valid instances, in the shipped list's format).

report.md is written last, through a temporary file and a rename, so an interrupted run never
leaves a report that looks complete.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from decodekit.bench.report import markdown_table
from decodekit.bench.structured import Comparison, FileResult, format_expected_failures, instance_id, rejected_valid

REPORT = "report.md"
RESULTS = "results.jsonl"
EXPECTED = "expected_failures.txt"
TOTAL = "total"

LLG_REPO = "https://github.com/guidance-ai/llguidance"
JSB_REPO = "https://github.com/guidance-ai/jsonschemabench"
# llguidance's CI expectations for MaskBench, per file (json_stats/expected_maskbench.json at
# llguidance c75b0d90, version 1.8.0 + 1 commit), counted per subset: (files, compiled, passing).
# Rust harness, Llama-3.1 tokenizer (128k tokens), instances written compactly; "passing" = every
# instance judged right (a valid one accepted to the end, an invalid one refused).
PUBLISHED_CI = f"{LLG_REPO}/blob/c75b0d90e12c941b881566e0a77bb5fa24cd2731/json_stats/expected_maskbench.json"
PUBLISHED_SUBSETS: dict[str, tuple[int, int, int]] = {
    "BFCL_simple": (346, 346, 346),
    "Github_easy": (1943, 1832, 1831),
    "Github_trivial": (444, 408, 407),
    "Glaiveai2K": (1707, 1639, 1639),
    "Handwritten": (147, 1, 1),
    "MCPspec": (45, 35, 35),
    "Synthesized": (413, 0, 0),
}


@dataclass(frozen=True)
class PublishedRun:
    """A totals row of MaskBench's own table (Python runner, all of MaskBench, Llama-3.1 tokenizer)."""

    version: str
    source: str
    schemas: int
    passing: int
    compile_errors: int
    validation_errors: int  # schemas with a valid instance refused
    invalidation_errors: int  # schemas with an invalid instance accepted
    mask_us: tuple[int, int, int]  # mean, p50, p99 ("TBM")
    compile_us: tuple[int, int, int, int]  # mean, p50, p90, max ("TTFM")


PUBLISHED_RUNS = [
    PublishedRun("0.6.7", f"{JSB_REPO}/blob/b677635f1b9d42fbc78b2cfbee8ff171a39fe481/maskbench/README.md", 10_163,
                 7_765, 2_373, 25, 0, (47, 36, 460), (1_611, 987, 2_584, 170_635)),
    PublishedRun("0.7.10", f"{JSB_REPO}/blob/ba103c73756198dd9b149ddc7db7867da7a077f6/maskbench/README.md", 11_306,
                 8_909, 2_377, 20, 0, (64, 46, 533), (1_850, 1_037, 3_030, 229_367)),
]


@dataclass
class SubsetSummary:
    name: str
    files: int = 0
    compiled: int = 0
    passing: int = 0
    valid: int = 0
    valid_accepted: int = 0
    invalid: int = 0
    invalid_accepted: int = 0
    tokens: int = 0
    compile_ms: list[float] = field(default_factory=list)
    mask_us: list[float] = field(default_factory=list)

    def add(self, result: FileResult) -> None:
        self.files += 1
        self.compiled += result.compiled
        self.passing += result.passing
        for instance in result.instances:
            self.tokens += instance.tokens
            if instance.valid:
                self.valid += 1
                self.valid_accepted += instance.accepted
            else:
                self.invalid += 1
                self.invalid_accepted += instance.accepted
        if result.compile_ms is not None:
            self.compile_ms.append(result.compile_ms)
        self.mask_us.extend(result.mask_us)

    def compile_stats(self) -> tuple[float, float, float] | None:
        """p50, p90, max in ms, over the schemas that compiled."""
        if not self.compile_ms:
            return None
        p50, p90 = np.percentile(self.compile_ms, [50, 90])
        return float(p50), float(p90), max(self.compile_ms)

    def mask_stats(self) -> tuple[float, float, float] | None:
        """p50, p99 and mean in µs, over every forced token."""
        if not self.mask_us:
            return None
        p50, p99 = np.percentile(self.mask_us, [50, 99])
        return float(p50), float(p99), float(np.mean(self.mask_us))


def summarize(results: Iterable[FileResult]) -> list[SubsetSummary]:
    """One summary per subset (sorted by name), then the total."""
    subsets: dict[str, SubsetSummary] = {}
    total = SubsetSummary(TOTAL)
    for result in results:
        subsets.setdefault(result.subset, SubsetSummary(result.subset)).add(result)
        total.add(result)
    return [subsets[name] for name in sorted(subsets)] + [total]


# --- results.jsonl ----------------------------------------------------------------------------


def write_results(path: Path, results: Iterable[FileResult]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for result in results:
            f.write(result.to_json() + "\n")


def read_results(path: Path) -> list[FileResult]:
    with open(path, encoding="utf-8") as f:
        return [FileResult.from_dict(json.loads(line)) for line in f if line.strip()]


# --- report.md --------------------------------------------------------------------------------


def _pct(part: int, whole: int) -> str:
    return f"{part}/{whole} ({_share(part, whole)})" if whole else "–"


def _share(part: int, whole: int) -> str:
    """A percentage that never rounds a miss away: 4,904 of 4,906 is >99.9%, not 100.0%."""
    text = f"{part / whole:.1%}"
    if part < whole and text == "100.0%":
        return ">99.9%"
    if part > 0 and text == "0.0%":
        return "<0.1%"
    return text


def _ms(stats: tuple[float, float, float] | None) -> str:
    return " / ".join(f"{v:.2f}" for v in stats) if stats else "–"


def _us(stats: tuple[float, float, float] | None) -> str:
    return " / ".join(f"{v:.1f}" for v in stats) if stats else "–"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def subset_rows(summaries: list[SubsetSummary]) -> list[list[str]]:
    rows = []
    for s in summaries:
        rows.append([s.name if s.name != TOTAL else "**total**", str(s.files), _pct(s.compiled, s.files),
                     _pct(s.passing, s.files), _pct(s.valid_accepted, s.valid), _pct(s.invalid_accepted, s.invalid),
                     _ms(s.compile_stats()), _us(s.mask_stats()), f"{s.tokens:,}"])
    return rows


SUBSET_HEADER = ["subset", "files", "compiled (coverage)", "passing files", "valid accepted", "invalid accepted",
                 "compile ms p50 / p90 / max", "mask µs p50 / p99 / mean", "tokens"]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return markdown_table(header, rows).splitlines()


def published_subset_rows(summaries: list[SubsetSummary]) -> list[list[str]]:
    rows = []
    for s in summaries:
        if s.name == TOTAL or s.name not in PUBLISHED_SUBSETS:
            continue
        files, compiled, passing = PUBLISHED_SUBSETS[s.name]
        rows.append([s.name, f"{files} / {s.files}", f"{_pct(compiled, files)} / {_pct(s.compiled, s.files)}",
                     f"{_pct(passing, files)} / {_pct(s.passing, s.files)}"])
    return rows


def below_published(results: list[FileResult]) -> list[str]:
    """Subsets run whole (as many files as llguidance's published count) where fewer schemas
    compiled, or fewer passed, than llguidance's own CI expects: a coverage regression."""
    short = []
    for s in summarize(results):
        published = PUBLISHED_SUBSETS.get(s.name)
        if published is None or s.files != published[0]:
            continue
        if s.compiled < published[1] or s.passing < published[2]:
            short.append(f"{s.name}: {s.compiled} compiled and {s.passing} passing of {s.files}, llguidance's CI expects "
                         f"{published[1]} and {published[2]}")
    return short


def published_run_rows(total: SubsetSummary, results: list[FileResult]) -> list[list[str]]:
    rows = []
    for run in PUBLISHED_RUNS:
        mean, p50, p99 = run.mask_us
        c_mean, c50, c90, c_max = run.compile_us
        rows.append([f"llguidance {run.version} ([source]({run.source}))", f"{run.schemas:,}", _pct(run.passing, run.schemas),
                     f"{run.compile_errors:,}", str(run.validation_errors), str(run.invalidation_errors),
                     f"{p50} / {p99} / {mean}",
                     f"{c50 / 1000:.2f} / {c90 / 1000:.2f} / {c_max / 1000:.1f} / {c_mean / 1000:.2f}"])
    mask = total.mask_stats()
    compile_ms = total.compile_stats()
    rows.append(["this run", f"{total.files:,}", _pct(total.passing, total.files), f"{total.files - total.compiled:,}",
                 str(sum(bool(r.valid_rejected) for r in results)), str(sum(bool(r.invalid_accepted) for r in results)),
                 f"{mask[0]:.0f} / {mask[1]:.0f} / {mask[2]:.0f}" if mask else "–",
                 (f"{compile_ms[0]:.2f} / {compile_ms[1]:.2f} / {compile_ms[2]:.1f} / {np.mean(total.compile_ms):.2f}"
                  if compile_ms else "–")])
    return rows


def _instance_lines(ids: list[str], reasons: dict[str, str | None], mark: set[str] | None = None) -> list[str]:
    lines = []
    for entry in ids:
        note = " **(new: not in the expected-failures list)**" if mark is not None and entry in mark else ""
        lines.append(f"- `{entry}`{note}: {_md(reasons.get(entry) or '')}")
    return lines


def _compile_errors(results: list[FileResult], top: int = 15) -> list[str]:
    counts = Counter((r.error or "").replace("\n", " ")[:140] for r in results if not r.compiled)
    if not counts:
        return ["None."]
    lines = _table(["files", "error (first 140 characters)"], [[str(n), f"`{e}`"] for e, n in counts.most_common(top)])
    if len(counts) > top:
        lines.append(f"\n… and {len(counts) - top} other messages (see results.jsonl).")
    return lines


def verdict(comparison: Comparison) -> str:
    if comparison.failed:
        parts = []
        if comparison.new_failures:
            parts.append(f"{len(comparison.new_failures)} valid instance(s) refused that the expected-failures list "
                         "does not name")
        if comparison.invalid_accepted:
            parts.append(f"{len(comparison.invalid_accepted)} invalid instance(s) accepted")
        return "FAIL: " + "; ".join(parts)
    text = "PASS: no invalid instance accepted, and every refused valid instance is on the expected-failures list"
    if comparison.fixed:
        text += f" ({len(comparison.fixed)} listed instance(s) now pass: remove them from the list)"
    return text


def render_markdown(results: list[FileResult], comparison: Comparison, info: dict, command: str) -> str:
    summaries = summarize(results)
    total = summaries[-1]
    reasons = {instance_id(r.name, i.index): i.reason for r in results for i in r.instances}
    errors = sorted(instance_id(r.name, i.index) for r in results for i in r.instances
                    if (i.reason or "").startswith("matcher error"))
    out = ["# decodekit bench-structured: MaskBench without a model", "", f"Command: `{command}`", ""]
    out += [f"- {key}: {value}" for key, value in info.items()]
    out += ["", "Each schema is compiled with llguidance's default JSON options (whitespace_flexible; not lenient; "
            "no coerce_one_of), as llguidance's MaskBench harnesses do. Each labelled instance is written with "
            "`json.dumps(data, ensure_ascii=False)`, tokenized by the model's tokenizer, and forced token by token "
            "through a fresh copy of the schema's matcher: a valid instance must be allowed to the end and leave the "
            "matcher accepting; an invalid one must be refused somewhere. Compile time = grammar build + matcher "
            "creation; mask time = `fill_next_token_bitmask` for each forced token. Details and sources: "
            "the docstring of `decodekit/bench/structured.py`.", "", f"**{verdict(comparison)}**", ""]
    out += ["## Per subset", ""] + _table(SUBSET_HEADER, subset_rows(summaries))
    out += ["", "Instances are counted over the schemas that compiled (the others' are never forced). A passing file "
            "compiled and judged each of its instances right (MaskBench's \"passing\" schema). Compile times are over the "
            "schemas that compiled, mask times over every forced token.", ""]
    out += ["## Beside llguidance's published figures", "",
            f"Per subset: llguidance's own CI expectations for MaskBench ([expected_maskbench.json]({PUBLISHED_CI}), "
            "llguidance 1.8.0 + 1 commit, its Rust harness, Llama-3.1 tokenizer) / this run. MaskBench publishes no "
            "per-instance pass rates: a file there fails at its first wrong instance.", ""]
    out += _table(["subset", "files (llguidance / ours)", "compiled (llguidance / ours)", "passing files (llguidance / ours)"],
                  published_subset_rows(summaries))
    out += ["", "Totals of MaskBench's published table (Python runner, all of MaskBench — including the harder subsets "
            "not run here — on a 128k-token Llama-3.1 tokenizer and another machine: timings compare only roughly; its "
            "mask time also includes the bit test and consume_token).", ""]
    out += _table(["run", "schemas", "passing", "compile errors", "schemas with a valid instance refused",
                   "schemas with an invalid instance accepted",
                   "mask µs p50 / p99 / mean", "compile ms p50 / p90 / max / mean"], published_run_rows(total, results))
    refused = rejected_valid(results)
    out += ["", f"## Valid instances refused ({len(refused)})", ""]
    out += _instance_lines(refused, reasons, set(comparison.new_failures)) or ["None."]
    out += ["", f"## Invalid instances accepted ({len(comparison.invalid_accepted)})", ""]
    out += _instance_lines(comparison.invalid_accepted, reasons) or ["None."]
    if comparison.fixed:
        out += ["", f"## Listed as expected failures but accepted now ({len(comparison.fixed)}): remove them from the list", ""]
        out += [f"- `{entry}`" for entry in comparison.fixed]
    if comparison.untested:
        out += ["", f"## Listed as expected failures but not forced this run ({len(comparison.untested)})", ""]
        out += [f"- `{entry}`" for entry in comparison.untested]
    out += ["", f"## Instances ended by a matcher error ({len(errors)})", "",
            "Lexer or parser limits, not a refused token; counted as refused.", ""]
    out += _instance_lines(errors, reasons) or ["None."]
    out += ["", f"## Schemas that did not compile ({total.files - total.compiled}), by error", ""] + _compile_errors(results)
    return "\n".join(out) + "\n"


def write_report(out_dir: Path, results: list[FileResult], comparison: Comparison, info: dict, command: str,
                 extra: str = "") -> None:
    """results.jsonl, expected_failures.txt, then report.md last, via a temporary file and a rename."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / REPORT).unlink(missing_ok=True)
    write_results(out_dir / RESULTS, results)
    (out_dir / EXPECTED).write_text(format_expected_failures(rejected_valid(results), command), encoding="utf-8")
    partial = out_dir / (REPORT + ".partial")
    partial.write_text(render_markdown(results, comparison, info, command) + (f"\n{extra}" if extra else ""),
                       encoding="utf-8")
    os.replace(partial, out_dir / REPORT)


TERMINAL_HEADER = ["subset", "files", "compiled", "valid accepted", "invalid accepted", "compile ms p50", "mask µs p50 / p99"]


def terminal_rows(summaries: list[SubsetSummary]) -> list[list[str]]:
    rows = []
    for s in summaries:
        compile_ms, mask = s.compile_stats(), s.mask_stats()
        rows.append([s.name, str(s.files), _share(s.compiled, s.files) if s.files else "–",
                     f"{s.valid_accepted}/{s.valid}", f"{s.invalid_accepted}/{s.invalid}",
                     f"{compile_ms[0]:.2f}" if compile_ms else "–", f"{mask[0]:.0f} / {mask[1]:.0f}" if mask else "–"])
    return rows


def print_terminal(results: list[FileResult], comparison: Comparison, console: Console, shown: int = 20) -> None:
    table = Table(title="bench-structured (details in report.md)", title_justify="left")
    for column in TERMINAL_HEADER:
        table.add_column(column, justify="left" if column == "subset" else "right")
    for row in terminal_rows(summarize(results)):
        table.add_row(*map(escape, row))
    console.print(table)
    for title, entries in (("new failures (valid instances refused, not in the expected-failures list)", comparison.new_failures),
                           ("invalid instances accepted", comparison.invalid_accepted),
                           ("fixed (listed, accepted now: remove it from the list)", comparison.fixed)):
        if entries:
            more = f" … and {len(entries) - shown} more (see report.md)" if len(entries) > shown else ""
            console.print(f"{title}: {', '.join(entries[:shown])}{more}", highlight=False)
    console.print(verdict(comparison), highlight=False)
