"""Errors a user can cause and fix.

Everything raised for bad input derives from `DecodekitError`, so the CLI can turn it into a
one-line message and exit code 2 instead of a traceback from deep inside torch.
"""


class DecodekitError(Exception):
    """Bad input or a problem the user can fix; the message says what and how."""


class ModelNotFoundError(DecodekitError):
    """A model name, path or hub id that cannot be resolved."""


class ChecksumError(DecodekitError):
    """A downloaded or assembled file whose sha256 is not the expected one."""


class UnsupportedModelError(DecodekitError):
    """A model the backend cannot drive (not a causal LM, missing cache support, ...)."""


class Stopped(Exception):
    """Not the user's error: the caller's `should_stop` asked a search to stop before its end
    (a server request that was cancelled or ran out of time)."""
