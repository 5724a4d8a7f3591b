"""Load a zoo name or a .gguf file into a LlamaCppBackend, optionally re-quantised."""

from __future__ import annotations

from pathlib import Path

from decodekit.errors import DecodekitError, ModelNotFoundError
from decodekit.models.llamacpp.backend import LlamaCppBackend
from decodekit.models.llamacpp.library import lib
from decodekit.models.llamacpp.quantize import check_quant, quantized


def gguf_file(spec: str, progress: bool = True) -> tuple[Path, str]:
    """The GGUF a spec names, and a short label for it: a zoo model's verified file (pulled when
    missing, never converted), or a .gguf path."""
    from decodekit.models.zoo import ZOO, pull_gguf

    if spec in ZOO:
        return pull_gguf(spec, progress=progress), spec
    path = Path(spec).expanduser()
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise ModelNotFoundError(f"no GGUF file at {path}")
        return path, path.stem
    raise ModelNotFoundError(f"the llama.cpp backend loads GGUF files: pass a zoo name ({', '.join(ZOO)}) or a "
                             f".gguf file, not '{spec}'")


def load_llamacpp(spec: str, quant: str | None = None, threads: int | None = None, context: int | None = None,
                  calibrate: bool = True, progress: bool = True) -> LlamaCppBackend:
    """`quant`: re-quantise once into the cache (q8_0, bf16, ...); None keeps the file's own.
    `calibrate`: start from this machine's measured forward-cost curve (calibrate.py)."""
    lib()  # a missing llama-cpp-python fails before anything is downloaded
    if quant is not None:
        check_quant(quant)
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise DecodekitError(f"threads must be an integer >= 1, got {threads!r}")
    path, label = gguf_file(spec, progress)
    if quant is not None:
        path = quantized(path, quant, label)
    backend = LlamaCppBackend(path, name=spec if quant is None else f"{spec}@{quant}", threads=threads,
                              context=context)
    if calibrate:
        from decodekit.calibrate import load_or_measure

        backend.latency = load_or_measure(backend)
    return backend
