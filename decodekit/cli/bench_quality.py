"""`decodekit bench-quality`: what each strategy does to the text (repetition, diversity,
fluency under a larger model, accuracy where references exist), and at what speed."""

from __future__ import annotations

import shlex
import sys
from dataclasses import replace
from pathlib import Path

import typer
from rich.console import Console

from decodekit.cli.errors import exit_on_user_error
from decodekit.cli.options import AMATEUR, BACKEND, DTYPE, THREADS, bench_model_form, strategy_options
from decodekit.cli.reports import clear_old_report, progress_bar
from decodekit.errors import DecodekitError
from decodekit.models.zoo import DEFAULT_MODEL

stderr = Console(stderr=True)

DEFAULT_ROWS = ("ar,ar[temperature=1.0,top_p=0.95],ar[temperature=1.0,epsilon_cutoff=0.0003],"
                "ar[temperature=1.0,eta_cutoff=0.0003],mirostat[temperature=1.0],dola,dola[dola_layers=low],uscd")
DEFAULT_CATEGORIES = "writing,roleplay,reasoning,humanities,math_reasoning"


def bench_quality(
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="Zoo name, local folder or hub id."),
    rows: str = typer.Option(DEFAULT_ROWS, help="Comma-separated rows: a method or strategy with its options and "
                                                "sampling settings in brackets, e.g. 'ar[temperature=1.0,top_p=0.95]', "
                                                "'dola[dola_layers=low]', 'contrastive-decoding[amateur=NAME]'."),
    dataset: str = typer.Option("spec-bench", help="'spec-bench' or a JSONL file in Spec-Bench's format."),
    categories: str = typer.Option(DEFAULT_CATEGORIES, help="Comma-separated categories or MT-bench sub-categories."),
    per_category: int = typer.Option(8, help="Questions per category (first turns only)."),
    max_new_tokens: int = typer.Option(128, help="Tokens per answer."),
    scorer: str = typer.Option("gemma3-270m", help="The model whose perplexity scores the outputs ('none': skip)."),
    amateur: str | None = AMATEUR,
    seed: int = typer.Option(0, help="Seed of the sampled rows."),
    samples: int = typer.Option(3, help="Questions whose outputs the report quotes, every row's."),
    backend_kind: str = BACKEND,
    dtype: str | None = DTYPE,
    threads: int | None = THREADS,
    out: Path = typer.Option(Path("bench-quality-out"), help="Folder for report.md, summary.json, results.jsonl."),
):
    """Compare decoding strategies on the text they produce."""
    from decodekit.bench.dataset import load_questions
    from decodekit.bench.quality import QualityRow, check_row
    from decodekit.bench.quality_report import print_quality, write_quality_report
    from decodekit.bench.quality_runner import run_quality, score_perplexity, summarize_quality
    from decodekit.machine import machine_info
    from decodekit.methods import parse_method, split_methods
    from decodekit.models.backends import check_backend, load_model

    command = "decodekit bench-quality " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    with exit_on_user_error():
        if max_new_tokens < 1:
            raise DecodekitError(f"--max-new-tokens must be >= 1, got {max_new_tokens}")
        if samples < 0:
            raise DecodekitError(f"--samples must be >= 0, got {samples}")
        dtype, _ = bench_model_form(backend_kind, dtype, None)
        check_backend(backend_kind, dtype, None)
        specs = [parse_method(entry) for entry in split_methods(rows)]
        if not specs:
            raise DecodekitError("no rows to run: pass --rows, e.g. 'ar,dola'")
        if len({s.label for s in specs}) != len(specs):
            raise DecodekitError("a row is listed twice: give each row different options")
        quality_rows = [QualityRow.from_spec(s) for s in specs]
        quality_rows = [replace(r, method_options=strategy_options(r.method, r.method_options, amateur))
                        if r.method in ("contrastive-decoding", "lol") else r for r in quality_rows]
        for row in quality_rows:
            check_row(row)
        questions = load_questions(dataset, [c.strip() for c in categories.split(",")], per_category)
        clear_old_report(out)
        with stderr.status(f"loading {model}"):
            backend = load_model(model, backend_kind, dtype=dtype, threads=threads)
        stderr.print(f"{len(questions)} questions × {len(quality_rows)} rows, up to {max_new_tokens} new tokens each",
                     highlight=False)
        with progress_bar(stderr, 24) as progress:
            task = progress.add_task("generating", total=len(questions) * len(quality_rows))
            records = run_quality(backend, quality_rows, questions, max_new_tokens, seed,
                                  on_progress=lambda row: progress.update(task, advance=1, description=row[:24]))
        if scorer != "none":
            with stderr.status(f"loading the scorer {scorer}"):
                scoring = backend if scorer == model else load_model(scorer, backend_kind, dtype=dtype, threads=threads)
            with progress_bar(stderr, 24) as progress:
                task = progress.add_task(f"perplexity ({scorer})"[:24], total=len(records))
                score_perplexity(scoring, records, on_progress=lambda: progress.update(task, advance=1))
        summaries = summarize_quality(quality_rows, records)
        info = {"model": f"`{model}` ({backend.identity})", "scorer": f"`{scorer}`" if scorer != "none" else "none",
                "questions": f"{len(questions)} ({categories}, {per_category} each, first turns)",
                "max_new_tokens": max_new_tokens, "seed": seed,
                "machine": ", ".join(f"{k} {v}" for k, v in machine_info(dtype=dtype, threads=threads).items())}
        write_quality_report(out, records, summaries, info, command, samples)
        print_quality(summaries, stderr)
        stderr.print(f"report: {out / 'report.md'}", highlight=False)
