"""`decodekit bench`: which method is fastest on my model and prompts, and was it lossless?"""

from __future__ import annotations

import shlex
import sys
from dataclasses import replace
from pathlib import Path

import typer
from rich.console import Console

from decodekit.cli.errors import exit_on_user_error
from decodekit.cli.options import AMATEUR, BACKEND, DTYPE, QUANT, THREADS, bench_model_form, strategy_options
from decodekit.cli.reports import clear_old_report, progress_bar
from decodekit.errors import DecodekitError
from decodekit.models.zoo import DEFAULT_MODEL

stderr = Console(stderr=True)

QUICK = {"per_category": 2, "max_new_tokens": 64}
DEFAULT_METHODS = {"hf": "ar,prompt-lookup,hf-greedy,hf-prompt-lookup",
                   "llama.cpp": "ar,prompt-lookup,llama-greedy,llama-prompt-lookup"}


def bench(
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="Zoo name, local folder, .gguf file or hub id."),
    methods: str | None = typer.Option(None, help="Comma-separated methods and baselines; options in brackets, e.g. "
                                                  "'token-recycling[adaptive=false]' (a method may be listed with "
                                                  f"different options). Default: {DEFAULT_METHODS['hf']} "
                                                  f"(llama.cpp: {DEFAULT_METHODS['llama.cpp']})."),
    dataset: str = typer.Option("spec-bench", help="'spec-bench', 'copy-heavy' (code editing, rewriting, "
                                "multi-turn edits, summaries, answers from a document) or a JSONL file in "
                                "Spec-Bench's format."),
    categories: str | None = typer.Option(None, help="Comma-separated categories (default: all)."),
    per_category: int | None = typer.Option(None, help="Questions per category (default: all; --quick: 2)."),
    max_new_tokens: int | None = typer.Option(None, help="Tokens per answer (default 128; --quick: 64)."),
    temperature: float = typer.Option(0.0, help="0 = greedy (and the losslessness check runs)."),
    repeats: int = typer.Option(1, help="Time each answer this many times, each from the same drafter state; "
                                         "the median counts."),
    draft: str | None = typer.Option(None, help="Draft model for draft-model, spectr, rsd, pearl and hf-assisted: a "
                                                 "smaller model with the target's tokenizer."),
    strategy: str | None = typer.Option(None, help="Decode every row with this strategy (dola, contrastive-decoding, "
                                                   "mirostat, lol, uscd; options in brackets): 'ar' is then the "
                                                   "strategy alone, and the methods are its drafters."),
    amateur: str | None = AMATEUR,
    backend_kind: str = BACKEND,
    dtype: str | None = DTYPE,
    quant: str | None = QUANT,
    threads: int | None = THREADS,
    out: Path = typer.Option(Path("bench-out"), help="Folder for results.jsonl, report.md and plots."),
    quick: bool = typer.Option(False, "--quick", help="2 questions per category, 64 tokens: a one-minute look."),
    strict: bool = typer.Option(False, "--strict", help="Exit 1 if any output differs from AR in a way numerics "
                                                        "cannot explain (the report names each one)."),
):
    """Benchmark decoding methods against decodekit AR and Hugging Face baselines."""
    from decodekit.bench.dataset import load_questions
    from decodekit.bench.metrics import summarize
    from decodekit.bench.report import print_terminal, write_report
    from decodekit.bench.runner import BenchSettings, run_bench
    from decodekit.machine import machine_info, peak_rss_mb
    from decodekit.methods import parse_method, split_methods
    from decodekit.models.backends import check_backend, load_model, shared_model
    from decodekit.sampling import SamplingConfig

    command = "decodekit bench " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    with exit_on_user_error():
        per_category = per_category if per_category is not None else (QUICK["per_category"] if quick else None)
        max_new_tokens = max_new_tokens if max_new_tokens is not None else (QUICK["max_new_tokens"] if quick else 128)
        if per_category is not None and per_category < 1:
            raise DecodekitError(f"--per-category must be >= 1, got {per_category}")
        dtype, quant = bench_model_form(backend_kind, dtype, quant)
        check_backend(backend_kind, dtype, quant)
        methods = methods if methods is not None else ("ar,prompt-lookup,token-recycling" if strategy
                                                       else DEFAULT_METHODS[backend_kind])
        strategy_spec = None
        if strategy:
            strategy_spec = parse_method(strategy)
            strategy_spec = replace(strategy_spec, options=strategy_options(strategy_spec.name, strategy_spec.options,
                                                                            amateur))
        elif amateur:
            raise DecodekitError("--amateur goes with --strategy contrastive-decoding or lol")
        settings = BenchSettings.parse(split_methods(methods), max_new_tokens=max_new_tokens,
                                       sampling=SamplingConfig(temperature=temperature), repeats=repeats,
                                       draft=draft, strategy=strategy_spec)
        settings.check_backend(backend_kind)
        if quant is not None and settings.variants:
            raise DecodekitError("--quant sets the weight type of every row; with NAME@VARIANT rows, leave it out and "
                                 "name each weight type in its rows (they are re-quantised from the file itself)")
        if any(spec.name == "hf-assisted" for spec in settings.methods) and not draft:
            raise DecodekitError("hf-assisted needs a draft model: pass --draft NAME")
        chosen = [c.strip() for c in categories.split(",")] if categories else None
        questions = load_questions(dataset, chosen, per_category)
        clear_old_report(out)
        with stderr.status(f"loading {model}"):
            backend = load_model(model, backend_kind, dtype=dtype, quant=quant, threads=threads)
            # Shared with decodekit's draft-model methods: one copy of the weights.
            draft_dtype = "" if backend_kind == "llama.cpp" else dtype  # llama.cpp: the draft file's own type
            draft_backend = shared_model(draft, like=backend, dtype=draft_dtype) if draft else None
            # NAME@VARIANT rows: the model in another dtype or weight type, so speedups can be
            # read against whichever form decodes fastest on this machine.
            llama = backend_kind == "llama.cpp"
            variants = {v: load_model(model, backend_kind, threads=threads, dtype="fp32" if llama else v,
                                      quant=v if llama else None) for v in settings.variants}
        turns = sum(len(q.turns) for q in questions)
        stderr.print(f"{len(questions)} questions ({turns} turns) × {len(settings.methods)} methods, "
                     f"{max_new_tokens} new tokens each", highlight=False)
        with progress_bar(stderr, 18) as progress:
            task = progress.add_task("benchmark", total=len(questions) * len(settings.methods))
            records = run_bench(backend, questions, settings, draft_backend,
                                on_progress=lambda method: progress.update(task, advance=1, description=method),
                                variants=variants)
        machine = machine_info(dtype=dtype if backend_kind == "hf" else getattr(backend, "weight_type", dtype), threads=threads)
        machine["backend"] = backend.identity
        machine["peak_rss_mb"] = round(peak_rss_mb())
        machine["model"] = model
        if strategy_spec is not None:
            machine["strategy"] = strategy
        summary = summarize(records)
        forms = None
        if variants:
            from decodekit.bench.forms import describe_forms

            with stderr.status("scoring each model form on a fixed text"):
                forms = describe_forms(backend, variants)
        write_report(out, records, summary, machine, command, forms)
        print_terminal(summary, stderr)
        stderr.print(f"report: {out / 'report.md'}", highlight=False)
    bugs = [(r, d) for r in records if (d := r.divergence) is not None and d.is_bug]
    if strict and bugs:
        record, divergence = bugs[0]
        stderr.print(f"error: {len(bugs)} outputs differ from AR in a way numerics cannot explain (--strict); the "
                     f"first: {record.method} on question {record.question_id}: {divergence.note}", highlight=False)
        raise typer.Exit(1)
