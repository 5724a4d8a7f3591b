"""Command-line options that several commands share, declared once so their help stays the same."""

from __future__ import annotations

import typer

BACKEND = typer.Option("hf", "--backend", help="hf (transformers) or llama.cpp (the GGUF itself; needs the "
                                               "llamacpp extra: `make llamacpp`).")
DTYPE = typer.Option(None, help="Transformers backend: fp32, bf16, fp16, or auto: the faster of fp32 and bf16 on "
                                "this machine, measured once and cached. Default: auto (bench: fp32).")
QUANT = typer.Option(None, help="llama.cpp backend: auto (the fastest weight type on this machine among the file's "
                                "own and q4_0, q8_0, bf16, measured once and cached), own (the file's own), or a type "
                                "to re-quantise to once (q8_0, bf16, q4_0, ...). Default: auto (bench: own).")
THREADS = typer.Option(None, help="CPU threads (default: torch's choice; llama.cpp: every core).")
AMATEUR = typer.Option(None, help="Amateur model for contrastive-decoding and lol: a smaller model with the "
                                   "expert's tokenizer, e.g. qwen2.5-coder-0.5b.")


def model_form(backend: str, dtype: str | None, quant: str | None, default: str = "auto") -> tuple[str, str | None]:
    """--dtype and --quant as load_model takes them: unset, each is `default` on its own
    backend ("auto", or "own": fp32 / the file's own type); `--quant own` is the file's own."""
    if backend == "llama.cpp":
        quant = quant or default
        return dtype or "fp32", None if quant == "own" else quant
    return dtype or ("auto" if default == "auto" else "fp32"), quant


def bench_model_form(backend: str, dtype: str | None, quant: str | None) -> tuple[str, str | None]:
    """A benchmark's --dtype and --quant: the file's own form unless one is named; never auto,
    since a benchmark compares forms in its rows and a hidden choice would blur what it ran."""
    from decodekit.errors import DecodekitError

    if "auto" in (dtype, quant):
        raise DecodekitError("a benchmark compares model forms itself: instead of auto, name the form (--dtype, "
                             "--quant) or add a row per form (NAME@VARIANT, e.g. copy-spec@q4_0, llama-greedy@q8_0)")
    return model_form(backend, dtype, quant, default="own")


def strategy_options(name: str, options: dict, amateur: str | None) -> dict:
    """A strategy's options with the command line's --amateur added where it takes one."""
    from decodekit.errors import DecodekitError
    from decodekit.strategies import takes_amateur

    takes = takes_amateur(name)
    if amateur and not takes:
        raise DecodekitError(f"--amateur is for contrastive-decoding and lol, not '{name}'")
    return {**options, "amateur": amateur} if amateur and "amateur" not in options else options


def model_flags(method: str, drafter: str | None, amateur: str | None, draft: str | None) -> tuple[dict, str | None]:
    """What --drafter, --amateur and --draft give `method` (a spec such as 'mirostat[tau=3]'):
    its options and its drafter, each flag filled in where it belongs. A flag the method cannot
    use is an error, never silently dropped. Shared by `generate` and `serve`."""
    from dataclasses import replace

    from decodekit.drafters import METHODS, fill_draft, takes_draft
    from decodekit.errors import DecodekitError
    from decodekit.methods import parse_method, spec_text
    from decodekit.search import SEARCHES
    from decodekit.strategies import STRATEGIES

    spec = parse_method(method)
    drafter_spec = parse_method(drafter) if drafter else None
    if draft and not (takes_draft(spec.name) or (drafter_spec and takes_draft(drafter_spec.name))):
        raise DecodekitError(f"--draft is for methods that draft with a second model "
                             f"({', '.join(m for m in METHODS if takes_draft(m))}), not '{spec.name}'")
    if spec.name in SEARCHES:
        if drafter or amateur or draft:
            raise DecodekitError(f"{spec.name} is a search over the model's own scores: it takes no --drafter, "
                                 "--amateur or --draft")
        return dict(spec.options), None
    if spec.name in STRATEGIES:
        options = strategy_options(spec.name, spec.options, amateur)
        if drafter_spec is None:
            return options, None
        return options, spec_text(replace(drafter_spec, options=fill_draft(drafter_spec.name, drafter_spec.options,
                                                                           draft)))
    if drafter or amateur:
        raise DecodekitError(f"--{'drafter' if drafter else 'amateur'} goes with a strategy method "
                             f"({', '.join(STRATEGIES)}), not '{spec.name}'")
    return fill_draft(spec.name, spec.options, draft), None
