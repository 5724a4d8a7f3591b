"""decodekit's OpenAI-compatible server and its playground (`decodekit serve`)."""

from decodekit.server.app import create_app
from decodekit.server.requests import DecodingChoice, ServerLimits

__all__ = ["DecodingChoice", "ServerLimits", "create_app"]
