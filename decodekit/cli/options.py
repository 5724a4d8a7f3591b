"""Command-line options that several commands share, declared once so their help stays the same."""

from __future__ import annotations

import inspect

import typer

BACKEND = typer.Option("hf", "--backend", help="hf (transformers) or llama.cpp (the GGUF itself; needs the "
                                               "llamacpp extra: `make llamacpp`).")
DTYPE = typer.Option("fp32", help="fp32, bf16 or fp16 (transformers backend).")
QUANT = typer.Option(None, help="llama.cpp backend: re-quantise the GGUF once into the cache (q8_0, bf16, q4_0, "
                                "...); default: the file's own.")
THREADS = typer.Option(None, help="CPU threads (default: torch's choice; llama.cpp: every core).")
AMATEUR = typer.Option(None, help="Amateur model for contrastive-decoding and lol: a smaller model with the "
                                   "expert's tokenizer, e.g. qwen2.5-coder-0.5b.")


def strategy_options(name: str, options: dict, amateur: str | None) -> dict:
    """A strategy's options with the command line's --amateur added where it takes one."""
    from decodekit.errors import DecodekitError
    from decodekit.strategies import STRATEGIES

    takes = name in STRATEGIES and "amateur" in inspect.signature(STRATEGIES[name]).parameters
    if amateur and not takes:
        raise DecodekitError(f"--amateur is for contrastive-decoding and lol, not '{name}'")
    return {**options, "amateur": amateur} if amateur and "amateur" not in options else options
