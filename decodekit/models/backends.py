"""Which backend loads a model: transformers ("hf", the default) or llama.cpp ("llama.cpp").

The one place that picks between the backends' packages, so the API, the CLI and draft-model
loading share one set of checks and messages.
"""

from __future__ import annotations

from collections.abc import Callable

from decodekit.backend import Backend
from decodekit.errors import DecodekitError
from decodekit.models.auto_form import is_auto, load_auto

BACKENDS = ("hf", "llama.cpp")


def check_backend(backend: str, dtype: str = "fp32", quant: str | None = None, device: str | None = None) -> None:
    """Options that do not belong to the chosen backend fail before anything loads."""
    if backend not in BACKENDS:
        raise DecodekitError(f"unknown backend '{backend}': choose one of {', '.join(BACKENDS)}")
    if backend == "hf" and quant is not None:  # "auto" included: it chooses among weight types
        raise DecodekitError("quant= re-quantises a GGUF for the llama.cpp backend (backend='llama.cpp'); "
                             "the transformers backend takes dtype= instead")
    if backend == "llama.cpp":
        if dtype != "fp32":
            raise DecodekitError(f"the llama.cpp backend runs the GGUF's own weight type: pass quant= (e.g. "
                                 f"'q8_0', 'bf16', 'auto') instead of dtype='{dtype}'")
        if device not in (None, "cpu"):
            raise DecodekitError(f"the llama.cpp backend runs on the CPU here, not on '{device}'")
        if quant not in (None, "auto"):
            from decodekit.models.llamacpp.quantize import check_quant  # no llama_cpp import: a name check

            check_quant(quant)


def load_model(spec: str, backend: str = "hf", dtype: str = "fp32", quant: str | None = None,
               threads: int | None = None, device: str | None = None, timed_with: str = "ar",
               progress: Callable[[str], None] | None = None) -> Backend:
    """`dtype="auto"` (transformers) or `quant="auto"` (llama.cpp): the form that decodes
    fastest on this machine with the method `timed_with`, measured once (models/auto_form.py);
    what was chosen and why is the backend's `form_choice`. `progress` hears what is measured."""
    check_backend(backend, dtype, quant, device)
    if is_auto(backend, dtype, quant):
        model, choice = load_auto(spec, backend, timed_with, threads, device, progress)
        # Both backend classes declare form_choice (None unless chosen here); the Backend
        # protocol does not, since views and test doubles have no form of their own.
        setattr(model, "form_choice", choice)  # noqa: B010
        return model
    if backend == "llama.cpp":
        from decodekit.models.llamacpp import load_llamacpp

        return load_llamacpp(spec, quant=quant, threads=threads)
    from decodekit.models.hf import load_backend

    return load_backend(spec, dtype=dtype, threads=threads, device=device)


_SHARED: dict[tuple[str, str], Backend] = {}


def shared_model(spec: str, like: Backend, dtype: str = "") -> Backend:
    """A second model (a draft model) on the same backend as `like`, loaded once per process:
    several drafters that use one draft model share its weights. `dtype`: the transformers
    dtype (default: `like`'s), or for llama.cpp a quantisation (default: the file's own)."""
    if getattr(like, "kind", "hf") == "llama.cpp":
        key = (spec, f"llama.cpp:{dtype}")
        if key not in _SHARED:
            _SHARED[key] = load_model(spec, "llama.cpp", quant=dtype or None, threads=getattr(like, "threads", None))
        return _SHARED[key]
    from decodekit.models.hf import shared_backend

    return shared_backend(spec, dtype or like.dtype_name, device=str(getattr(like, "device", "cpu")))
