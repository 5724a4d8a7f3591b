"""The Hugging Face transformers backend: the only package that imports transformers."""

from decodekit.models.hf.backend import DTYPES, HFBackend
from decodekit.models.hf.cache import HFCache
from decodekit.models.hf.load import load_backend, shared_backend
from decodekit.models.hf.skip import LayerSkipBackend, balanced_layers, early_exit_layers, skipping_layers

__all__ = [
    "DTYPES",
    "HFBackend",
    "HFCache",
    "LayerSkipBackend",
    "balanced_layers",
    "early_exit_layers",
    "load_backend",
    "shared_backend",
    "skipping_layers",
]
