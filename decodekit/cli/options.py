"""Command-line options that several commands share, declared once so their help stays the same."""

from __future__ import annotations

import typer

BACKEND = typer.Option("hf", "--backend", help="hf (transformers) or llama.cpp (the GGUF itself; needs the "
                                               "llamacpp extra: `make llamacpp`).")
DTYPE = typer.Option("fp32", help="fp32, bf16 or fp16 (transformers backend).")
QUANT = typer.Option(None, help="llama.cpp backend: re-quantise the GGUF once into the cache (q8_0, bf16, q4_0, "
                                "...); default: the file's own.")
THREADS = typer.Option(None, help="CPU threads (default: torch's choice; llama.cpp: every core).")
