"""Load a model by zoo name, local folder, .gguf file or hub id into an HFBackend."""

from __future__ import annotations

import torch

from decodekit.errors import DecodekitError, ModelNotFoundError, UnsupportedModelError
from decodekit.models.hf.backend import DTYPES, HFBackend


def pick_device(device: str | None) -> torch.device:
    """None means the GPU when there is one, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except RuntimeError:
        raise DecodekitError(f"unknown device '{device}': use cpu, cuda or cuda:N") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise DecodekitError(f"device '{device}' asked for, but torch sees no CUDA GPU here")
    if chosen.type not in ("cpu", "cuda"):
        raise DecodekitError(f"device '{device}' is not supported: use cpu, cuda or cuda:N")
    count = torch.cuda.device_count() if chosen.type == "cuda" else 0
    if chosen.type == "cuda" and chosen.index is not None and chosen.index >= count:
        have = "cuda:0" if count == 1 else f"cuda:0 to cuda:{count - 1}"
        raise DecodekitError(f"device '{device}' asked for, but torch sees {count} CUDA GPU(s): use {have}")
    return chosen


def load_backend(spec: str, dtype: str = "fp32", threads: int | None = None, calibrate: bool = True,
                 device: str | None = None) -> HFBackend:
    """Load a zoo name, a local folder / .gguf file or a hub id into a backend.

    `calibrate`: start from this machine's measured forward-cost curve (measured once, ~10 s,
    then cached; see calibrate.py) rather than the built-in CPU prior."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from decodekit.models.zoo import resolve

    hf_logging.disable_progress_bar()  # a sub-second load needs no bar; pulls show their own

    if dtype not in DTYPES:
        raise DecodekitError(f"unknown dtype '{dtype}': choose one of {', '.join(DTYPES)}")
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise DecodekitError(f"threads must be an integer >= 1, got {threads!r}")
        torch.set_num_threads(threads)
    target = pick_device(device)
    path = resolve(spec, dtype=dtype)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=DTYPES[dtype])
    except (OSError, ValueError, KeyError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if isinstance(error, OSError):
            raise ModelNotFoundError(f"cannot load model '{spec}' from {path}: {first_line}") from error
        raise UnsupportedModelError(f"model '{spec}' is not a supported causal LM: {first_line}") from error
    model.to(target)  # type: ignore[arg-type]  # transformers' wrapper of Module.to hides its signature
    backend = HFBackend(model=model, tokenizer=tokenizer, name=spec)
    if calibrate:
        from decodekit.calibrate import load_or_measure

        backend.latency = load_or_measure(backend)
    return backend


_SHARED: dict[tuple[str, str, str], HFBackend] = {}


def shared_backend(spec: str, dtype: str, device: str | None = None) -> HFBackend:
    """One loaded copy per (model, dtype, device) in this process: several drafters that use
    the same draft model (a benchmark lists a few) share its weights. A backend holds no
    per-generation state (caches are separate objects), so sharing is safe."""
    key = (spec, dtype, str(pick_device(device)))
    if key not in _SHARED:
        _SHARED[key] = load_backend(spec, dtype=dtype, device=device)
    return _SHARED[key]
