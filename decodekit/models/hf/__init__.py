"""The Hugging Face transformers backend: the only package that imports transformers."""

from decodekit.models.hf.backend import DTYPES, HFBackend
from decodekit.models.hf.cache import HFCache
from decodekit.models.hf.load import load_backend

__all__ = ["DTYPES", "HFBackend", "HFCache", "load_backend"]
