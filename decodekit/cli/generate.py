"""`decodekit generate`: stream generated text to stdout, stats to stderr."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from decodekit.cli.errors import exit_on_user_error
from decodekit.cli.options import AMATEUR, BACKEND, DTYPE, QUANT, THREADS, model_flags, model_form
from decodekit.drafters import METHODS, check_method
from decodekit.errors import DecodekitError
from decodekit.grammar import gbnf, grammar_text
from decodekit.methods import parse_method
from decodekit.models.backends import check_backend
from decodekit.models.zoo import DEFAULT_MODEL
from decodekit.prompts import check_text
from decodekit.search import SEARCHES, make_search
from decodekit.settings import GenerateOptions, GenerationSettings
from decodekit.strategies import STRATEGIES, make_strategy

stderr = Console(stderr=True)

SUGGESTED_CUTOFF = 3e-4  # Hewitt et al.'s suggested epsilon; transformers' docs suggest 3e-4 to 2e-3 for eta


def generate(
    prompt: str = typer.Argument(..., help="The prompt, or '-' to read it from stdin."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="Zoo name, local folder, .gguf file or hub id."),
    method: str = typer.Option("prompt-lookup", help=f"Decoding method: {', '.join(METHODS)}, a+b (merged), or auto; "
                                                     f"or a strategy that reshapes the distribution: "
                                                     f"{', '.join(STRATEGIES)}; or a search: {', '.join(SEARCHES)}. "
                                                     "Options in brackets, e.g. 'prompt-lookup[max_draft=8]', "
                                                     "'dola[dola_layers=low]', 'beam[num_beams=4]'."),
    drafter: str | None = typer.Option(None, help="With a strategy method: the drafting method that speeds it up "
                                                  "without changing its output, e.g. prompt-lookup."),
    amateur: str | None = AMATEUR,
    num_drafts: int | None = typer.Option(None, help="With --method superposed: how many drafts to make at once "
                                                     "(its num_drafts option)."),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens", "-n", help="Most tokens to generate."),
    temperature: float = typer.Option(0.0, help="0 = greedy."),
    top_k: int = typer.Option(0, help="Keep the k most likely tokens (0 = off)."),
    top_p: float = typer.Option(1.0, help="Nucleus sampling mass, in (0, 1]."),
    min_p: float = typer.Option(0.0, help="Drop tokens below min_p x the top probability."),
    typical_p: float = typer.Option(1.0, help="Locally typical sampling mass, in (0, 1]."),
    sampler: str | None = typer.Option(None, help="eta or epsilon: truncation sampling (Hewitt et al.) with its "
                                                  f"suggested cutoff {SUGGESTED_CUTOFF:g}; needs --temperature."),
    epsilon_cutoff: float = typer.Option(0.0, help="Epsilon sampling: drop tokens below this probability (0 = off)."),
    eta_cutoff: float = typer.Option(0.0, help="Eta sampling: drop tokens below min(eta, sqrt(eta) exp(-entropy)) "
                                               "(0 = off)."),
    seed: int | None = typer.Option(None, help="Seed for sampling (reproducible output)."),
    stop: list[str] = typer.Option([], "--stop", help="Stop when this text appears (repeatable)."),
    system: str | None = typer.Option(None, help="System message for chat models."),
    raw: bool = typer.Option(False, "--raw", help="Feed the prompt as is, without the chat template."),
    draft: str | None = typer.Option(None, help="Draft model for draft-model, spectr, rsd and pearl: a smaller model "
                                                 "with the target's tokenizer, e.g. qwen2.5-coder-0.5b."),
    backend: str = BACKEND,
    dtype: str | None = DTYPE,
    quant: str | None = QUANT,
    threads: int | None = THREADS,
    device: str | None = typer.Option(None, help="cpu, cuda or cuda:N (default: the GPU if there is one)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (text, ids, stats) instead of streaming."),
    json_schema: Path | None = typer.Option(None, "--json-schema", help="Constrain the output to this JSON Schema (a file)."),
    json_lenient: bool = typer.Option(False, "--json-lenient", help="Ignore schema keywords llguidance does not implement."),
    regex: str | None = typer.Option(None, "--regex", help="Constrain the output to match this regular expression."),
    grammar: Path | None = typer.Option(None, "--grammar", help="Constrain the output to this grammar file: Lark "
                                                                "(llguidance's dialect) or GBNF (.gbnf, or rules with ::=)."),
    heal: bool = typer.Option(False, "--heal", help="Token healing: rewrite the prompt's last token, so a prompt "
                                                    "that ends mid-word completes the word."),
):
    """Generate text with a decoding method; the text goes to stdout, the figures to stderr."""
    from decodekit.api import Decoder  # imported here so `--help` stays fast

    with exit_on_user_error():
        text = check_text(_read_stdin() if prompt == "-" else prompt, "the prompt")
        spec = parse_method(method)
        searching = spec.name in SEARCHES
        method_options, drafter = model_flags(method, drafter, amateur, draft)
        if num_drafts is not None:
            if spec.name != "superposed":
                raise DecodekitError(f"--num-drafts goes with --method superposed, not '{spec.name}'")
            method_options["num_drafts"] = num_drafts
        if searching:
            make_search(spec.name, **method_options)
        elif spec.name not in STRATEGIES:  # a strategy is checked below, with the sampling settings
            check_method(spec.name, method_options)
        epsilon_cutoff, eta_cutoff = _cutoffs(sampler, epsilon_cutoff, eta_cutoff, temperature)
        options: GenerateOptions = dict(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                       min_p=min_p, typical_p=typical_p, epsilon_cutoff=epsilon_cutoff, eta_cutoff=eta_cutoff,
                       seed=seed, stop=stop, heal=heal, **_constraint_options(json_schema, json_lenient, regex, grammar))
        settings = GenerationSettings.from_options(options)  # bad settings fail before the model loads
        if spec.name in STRATEGIES:
            make_strategy(spec.name, **method_options).check_sampling(settings.sampling)
        dtype, quant = model_form(backend, dtype, quant)
        check_backend(backend, dtype, quant, device)
        loading = f"{model} on llama.cpp ({quant or 'its own weight type'})" if backend == "llama.cpp" else f"{model} ({dtype})"
        with stderr.status(f"loading {loading}" + (", measuring methods on this prompt" if method == "auto" else "")) as status:
            decoder = Decoder(model, spec.name, backend=backend, dtype=dtype, quant=quant, threads=threads,
                              device=device, sample=[text] if spec.name == "auto" else None, drafter=drafter,
                              progress=status.update, **method_options)
        if decoder.auto_choice:
            stderr.print(f"[dim]{decoder.auto_choice.describe()}[/dim]", highlight=False)
        ids = decoder.prompt_ids(text) if raw else decoder.user_prompt_ids(text, system)
        if as_json:
            result = decoder.generate(prompt_ids=ids, **options)
            candidates = {"candidates": [asdict(c) for c in result.candidates]} if searching else {}
            form = {"form": decoder.form_choice.as_dict()} if decoder.form_choice else {}
            print(json.dumps({"model": model, "method": method, **form, "text": result.text,
                              "token_ids": result.token_ids, "completed": result.completed, **candidates,
                              "stats": result.stats.as_dict()}))
            if decoder.form_choice:
                stderr.print(decoder.form_choice.describe(), style="dim", markup=False, highlight=False)
            return
        if searching:  # the n-best, best first; a search has no stream to show
            result = decoder.generate(prompt_ids=ids, **options)
            for rank, candidate in enumerate(result.candidates, 1):
                log_p = "" if candidate.log_prob is None else f", log p {candidate.log_prob:.2f}"
                heading = f"#{rank} (score {candidate.score:.4f}{log_p})"
                print(f"{heading}\n{candidate.text}" if len(result.candidates) > 1 else candidate.text)
            stderr.print(_summary(method, result.stats, decoder.form_choice), highlight=False)
            return
        from decodekit.types import GenerationStats

        stats = GenerationStats()
        for chunk in decoder.stream_chunks(prompt_ids=ids, stats=stats, **options):
            sys.stdout.write(chunk.text)
            sys.stdout.flush()
        sys.stdout.write("\n")
        stderr.print(_summary(method, stats, decoder.form_choice), highlight=False)


def _cutoffs(sampler: str | None, epsilon: float, eta: float, temperature: float) -> tuple[float, float]:
    """--sampler eta|epsilon as the cutoff it stands for; the cutoffs only mean something when sampling."""
    if sampler is not None:
        if sampler not in ("eta", "epsilon"):
            raise DecodekitError(f"--sampler must be eta or epsilon, got {sampler!r}")
        if (epsilon if sampler == "eta" else eta):
            raise DecodekitError(f"--sampler {sampler} goes with --{sampler}-cutoff only")
        if sampler == "eta":
            eta = eta or SUGGESTED_CUTOFF
        else:
            epsilon = epsilon or SUGGESTED_CUTOFF
    if (epsilon or eta) and temperature == 0:
        raise DecodekitError("eta and epsilon sampling sample: pass --temperature (1.0 is the usual choice)")
    return epsilon, eta


def _constraint_options(json_schema: Path | None, lenient: bool, regex: str | None, grammar: Path | None) -> dict:
    """The generate() options for the constraint flags (files read here, so a bad path is a clear error)."""
    if lenient and json_schema is None:
        raise DecodekitError("--json-lenient goes with --json-schema")
    options: dict = {}
    if json_schema is not None:
        spec = {"name": json_schema.stem, "schema": _read_file(json_schema, "--json-schema")}
        options["response_format"] = {"type": "json_schema", "json_schema": {**spec, **({"lenient": True} if lenient else {})}}
    if regex is not None:
        options["regex"] = regex
    if grammar is not None:
        text = _read_file(grammar, "--grammar")
        options["grammar"] = gbnf(text) if grammar.suffix == ".gbnf" else grammar_text(text)
    return options


def _read_file(path: Path, flag: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise DecodekitError(f"{flag}: cannot read {path}: {getattr(error, 'strerror', None) or error}") from None


def _read_stdin() -> str:
    data = sys.stdin.buffer.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DecodekitError(f"stdin is not UTF-8 text: byte 0x{data[error.start]:02x} at offset {error.start}") from None


def _summary(method: str, stats, form_choice=None) -> str:
    """The figures for stderr, after the text: what the run did, and which form ran it when
    the form was chosen by measurement (told after the answer, so an error stays one line)."""
    line = f"[dim]{escape(form_choice.describe())}\n" if form_choice else "[dim]"
    line += (f"{method}: {stats.new_tokens} tokens in {stats.wall_s:.2f} s = {stats.tokens_per_s:.1f} tok/s · "
            f"{stats.steps} steps · τ {stats.tau:.2f} tokens/step")
    if stats.drafted_tokens:
        line += f" · {stats.acceptance_rate:.0%} of {stats.drafted_tokens} drafted tokens accepted"
    if stats.forced_tokens:
        line += f" · {stats.forced_tokens} tokens forced by the grammar"
    hist = " ".join(f"{k}:{v}" for k, v in stats.accepted_hist.items())
    done = "" if stats.completed is None else f" · grammar {'completed' if stats.completed else 'NOT completed'}"
    return line + f"\ntokens per step histogram {hist} · stop: {stats.stop_reason}{done}[/dim]"
