"""User errors become one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import contextlib
import sys

import typer

from decodekit.errors import DecodekitError

USAGE_ERROR = 2


@contextlib.contextmanager
def exit_on_user_error():
    try:
        yield
    except DecodekitError as error:
        print(f"error: {error}", file=sys.stderr)
        raise typer.Exit(USAGE_ERROR) from None
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise typer.Exit(130) from None
