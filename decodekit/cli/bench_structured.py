"""`decodekit bench-structured DIR`: does llguidance compile MaskBench's schemas, accept their valid
instances and refuse their invalid ones, and how fast — on this model's tokenizer."""

from __future__ import annotations

import json
import platform
import shlex
import sys
import time
from pathlib import Path

import typer
from rich.console import Console

from decodekit.cli.errors import exit_on_user_error
from decodekit.cli.reports import clear_old_report, progress_bar
from decodekit.drafters import check_method
from decodekit.errors import DecodekitError
from decodekit.methods import MethodSpec, parse_method, split_methods
from decodekit.models.zoo import DEFAULT_MODEL

stderr = Console(stderr=True)

FAILED = 1  # a new failure or an accepted invalid instance: the run itself is a failing check


def bench_structured(
    folder: Path = typer.Argument(..., help="Folder of MaskBench .json files (JSONSchemaBench's maskbench/data)."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="Model whose tokenizer the instances are forced in "
                                                                  "(zoo name, local folder, .gguf file or hub id)."),
    out: Path = typer.Option(Path("bench-structured-out"), help="Folder for results.jsonl, report.md and "
                                                                "expected_failures.txt."),
    expected_failures: Path | None = typer.Option(None, help="List of valid instances known to be refused (FILE#INDEX "
                                                              "per line); default: the list shipped with decodekit."),
    limit: int | None = typer.Option(None, help="Only the first N files, by name."),
    generate: int = typer.Option(0, help="Also generate with the model under N schemas (greedy and at temperature "
                                         "1.0) and validate the outputs with jsonschema."),
    method: str = typer.Option("ar", help="Decoding method for --generate."),
    max_new_tokens: int = typer.Option(128, "--max-new-tokens", help="Token budget per output for --generate; an "
                                                                    "output cut by it is counted as truncated."),
    speed: int = typer.Option(40, help="For the first N generated schemas, also decode without the constraint and "
                                       "compare tokens/s."),
    methods: str = typer.Option("", help="Comma-separated drafting methods (e.g. prompt-lookup,copy-spec) that also "
                                         "decode the first --speed schemas greedily under the constraint: their ids "
                                         "must equal constrained AR's."),
):
    """Coverage, compliance and speed of decodekit's JSON Schema constraints on MaskBench; with --generate N,
    also outputs generated under N schemas, validated, and the constraint's cost in tokens/s."""
    import llguidance

    from decodekit.bench.structured import compare, load_folder, read_expected_failures, run_benchmark
    from decodekit.bench.structured_report import below_published, print_terminal, write_report
    from decodekit.machine import cpu_model
    from decodekit.models.hf import load_backend

    command = "decodekit bench-structured " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    with exit_on_user_error():
        if generate < 0:
            raise DecodekitError(f"--generate must be >= 0, got {generate}")
        if methods and not generate:
            raise DecodekitError("--methods compares drafters under the schemas of --generate: give --generate N too")
        specs = [parse_method(m) for m in [method, *split_methods(methods)]]
        for spec in specs:  # a typo fails here, not after the model-free half has run
            check_method(spec.name, spec.options, allow_auto=False)
        if max_new_tokens < 1:
            raise DecodekitError(f"--max-new-tokens must be >= 1, got {max_new_tokens}")
        files = load_folder(folder, limit)
        expected = read_expected_failures(expected_failures)
        clear_old_report(out)
        with stderr.status(f"loading {model}"):
            backend = load_backend(model, calibrate=False)
            tokenizer = backend.grammar_tokenizer()
        stderr.print(f"{len(files)} schema files, {sum(len(f.instances) for f in files)} instances", highlight=False)
        start = time.perf_counter()
        with progress_bar(stderr, 16) as progress:
            task = progress.add_task("schemas", total=len(files))
            results = run_benchmark(files, tokenizer, on_progress=lambda result: progress.update(
                task, advance=1, description=result.subset))
        seconds = time.perf_counter() - start
        comparison = compare(results, expected)
        generated, section = _generate(backend, specs[0], files, results, generate, max_new_tokens, speed, out, command,
                                       specs[1:])
        info = {"model": model, "tokenizer vocabulary": tokenizer.vocab_size, "llguidance": llguidance.__version__,
                "cpu": cpu_model(), "python": platform.python_version(), "files": len(files),
                "expected failures": str(expected_failures or "the list shipped with decodekit"),
                "run time": f"{seconds:.1f} s (one thread)"}
        write_report(out, results, comparison, info, command, extra=section)
        print_terminal(results, comparison, stderr)
        shortfalls = below_published(results)
        for line in shortfalls:
            stderr.print(f"[red]coverage below llguidance's published figure[/red] {line}", highlight=False)
        stderr.print(f"report: {out / 'report.md'}", highlight=False)
    diverged = any(m["explained"] is False for g in generated for m in g.methods.values())
    if comparison.failed or shortfalls or diverged or any(g.verdict in ("invalid", "unparsable") for g in generated):
        raise typer.Exit(FAILED)


def _generate(backend, method: MethodSpec, files, results, count: int, max_new_tokens: int, speed: int, out: Path,
              command: str, methods: list[MethodSpec]) -> tuple[list, str]:
    """`--generate N`: outputs under N compiled schemas, validated; generation.jsonl and a report section."""
    if count == 0:
        return [], ""
    from decodekit.api import Decoder
    from decodekit.bench.structured_generation import candidates, generate_all, markdown

    decoder = Decoder(backend, method.name, **method.options)
    drafters = {spec.label: Decoder(backend, spec.name, **spec.options) for spec in methods}
    picked = candidates(files, {r.name for r in results if r.compiled})
    with progress_bar(stderr, 16) as progress:
        task = progress.add_task("generating", total=min(count, len(picked)) * 2)
        generated = generate_all(decoder, picked, count, max_new_tokens, speed,
                                 on_progress=lambda g: progress.update(task, advance=1, description=f"{g.subset} {g.mode}"),
                                 drafters=drafters)
    with (out / "generation.jsonl").open("w", encoding="utf-8") as f:
        for g in generated:
            f.write(json.dumps(g.as_dict(), ensure_ascii=False) + "\n")
    section = markdown(generated, f"{command} (method {method.name}, max_new_tokens {max_new_tokens})")
    stderr.print(section, highlight=False)
    return generated, section
