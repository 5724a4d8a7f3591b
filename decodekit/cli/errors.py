"""User errors become one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

import typer

from decodekit.errors import DecodekitError

USAGE_ERROR = 2
INTERRUPTED = 130  # the shell's code for a command ended by Ctrl-C


@contextlib.contextmanager
def exit_on_user_error() -> Iterator[None]:
    """Use as `with exit_on_user_error():` or as a decorator on a command function.

    Only DecodekitError is caught: anything else is a bug, and its traceback should show.
    """
    try:
        yield
    except DecodekitError as error:
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"error: {message}", file=sys.stderr)
        raise typer.Exit(USAGE_ERROR) from None
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise typer.Exit(INTERRUPTED) from None
