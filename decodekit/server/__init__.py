"""decodekit's OpenAI-compatible server and its playground (`decodekit serve`).

The names load on first use, so that `decodekit serve --help` (which reads the limits' defaults
from server/limits.py) does not import the web stack and torch."""

from __future__ import annotations

import importlib

__all__ = ["DecodingChoice", "ServerLimits", "create_app"]
_HOMES = {"DecodingChoice": "decodekit.server.requests", "ServerLimits": "decodekit.server.limits",
          "create_app": "decodekit.server.app"}


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'decodekit.server' has no attribute {name!r}")
