"""Re-quantising a GGUF once into the cache, with llama.cpp's own `llama_model_quantize`.

The curve of forward cost by batch size depends on the weight type on a CPU (some types have
batched kernels, some only one-token ones), and speculative decoding lives on that curve; so a
user may pick the type that pays best. Going up from a 4-bit file (q4_1 -> q8_0, bf16) keeps the
4-bit rounding of the weights: the model is not more accurate, only differently fast.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
from pathlib import Path

from decodekit.errors import DecodekitError
from decodekit.models.llamacpp.library import lib
from decodekit.paths import home

# The user-facing name of each weight type, and llama.cpp's LLAMA_FTYPE_MOSTLY_* suffix.
QUANTS = {
    "f32": "ALL_F32", "f16": "MOSTLY_F16", "bf16": "MOSTLY_BF16", "q8_0": "MOSTLY_Q8_0",
    "q6_k": "MOSTLY_Q6_K", "q5_k_m": "MOSTLY_Q5_K_M", "q5_0": "MOSTLY_Q5_0", "q5_1": "MOSTLY_Q5_1",
    "q4_k_m": "MOSTLY_Q4_K_M", "q4_0": "MOSTLY_Q4_0", "q4_1": "MOSTLY_Q4_1", "iq4_nl": "MOSTLY_IQ4_NL",
}


def check_quant(quant: str) -> None:
    if quant not in QUANTS:
        raise DecodekitError(f"unknown quantisation '{quant}': choose one of {', '.join(QUANTS)}")


def quantized(source: Path, quant: str, label: str) -> Path:
    """`source` re-quantised to `quant`, made once and kept in $DECODEKIT_HOME/gguf/."""
    check_quant(quant)
    # Keyed by the source's path and size, so two files with one name do not collide.
    key = hashlib.sha256(f"{source.resolve()}|{source.stat().st_size}".encode()).hexdigest()[:8]
    target = home() / "gguf" / f"{label}-{key}-{quant}.gguf"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".partial{os.getpid()}")
    llama = lib()
    params = llama.llama_model_quantize_default_params()
    params.ftype = getattr(llama, f"LLAMA_FTYPE_{QUANTS[quant]}")
    params.allow_requantize = True  # the zoo's files are already quantized
    params.nthread = len(os.sched_getaffinity(0))
    status = llama.llama_model_quantize(str(source).encode(), str(partial).encode(), ctypes.byref(params))
    if status != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        raise DecodekitError(f"llama.cpp could not quantize {source.name} to {quant} (status {status})")
    partial.replace(target)  # atomic: a reader never sees half a file
    return target
