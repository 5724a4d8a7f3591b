"""Where decodekit keeps what it downloads and measures. A leaf module: anything may import it."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """The cache root: $DECODEKIT_HOME, else ~/.cache/decodekit (read on every call)."""
    configured = os.environ.get("DECODEKIT_HOME")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "decodekit"
