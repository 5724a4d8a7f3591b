"""The llama.cpp backend (llama-cpp-python): the only package that imports llama_cpp."""

from decodekit.models.llamacpp.backend import LlamaCppBackend
from decodekit.models.llamacpp.library import BackendUnavailableError, available
from decodekit.models.llamacpp.load import gguf_file, load_llamacpp
from decodekit.models.llamacpp.quantize import QUANTS

__all__ = ["QUANTS", "BackendUnavailableError", "LlamaCppBackend", "available", "gguf_file", "load_llamacpp"]
