"""llama-cpp-python, imported and initialised once, with llama.cpp's logging kept to errors.

The only module that imports `llama_cpp` directly; the rest of the package asks `lib()`.
"""

from __future__ import annotations

import ctypes
import functools
import sys
from types import ModuleType

from decodekit.errors import DecodekitError

INSTALL_HINT = ("install it with `pip install 'decodekit[llamacpp]'` (the README's `make llamacpp` builds it with "
                "CPU flags that work where the default build crashes)")
GGML_LOG_LEVEL_ERROR = 4


class BackendUnavailableError(DecodekitError):
    """The llama.cpp backend was asked for, and llama-cpp-python is not installed."""


@functools.cache
def lib() -> ModuleType:
    try:
        import llama_cpp
    except ImportError:
        raise BackendUnavailableError(f"the llama.cpp backend needs llama-cpp-python: {INSTALL_HINT}") from None
    llama_cpp.llama_backend_init()
    llama_cpp.llama_log_set(_errors_only(llama_cpp), ctypes.c_void_p(0))
    return llama_cpp


def _errors_only(llama_cpp: ModuleType):
    # llama.cpp reports every tensor and buffer it loads at INFO level; only errors concern a user.
    def log(level: int, text: bytes, _user_data) -> None:
        if level == GGML_LOG_LEVEL_ERROR:
            sys.stderr.write(text.decode("utf-8", errors="replace"))

    callback = llama_cpp.llama_log_callback(log)
    _KEEP_ALIVE.append(callback)  # llama.cpp keeps the pointer: the Python object must outlive it
    return callback


_KEEP_ALIVE: list = []


def available() -> bool:
    try:
        lib()
    except BackendUnavailableError:
        return False
    return True
