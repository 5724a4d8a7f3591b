"""User errors become one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

import typer
from typer.core import TyperGroup

from decodekit.errors import DecodekitError

try:  # recent typers parse with their own copy of click; older ones with click itself
    from typer._click import exceptions as click_exceptions
except ImportError:
    from click import exceptions as click_exceptions  # type: ignore[no-redef]

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
        _fail(str(error) or type(error).__name__)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise typer.Exit(INTERRUPTED) from None


class OneLineUsageErrors(TyperGroup):
    """The root command group: click's own usage errors (an unknown option, a value that is not
    a number, a missing argument) get the same one line as every other user error, instead of
    a usage box that scripts and logs would have to parse."""

    def make_context(self, info_name, args, parent=None, **extra):
        with _usage_error_on_one_line():
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx):
        with _usage_error_on_one_line():  # subcommands parse their arguments in here
            return super().invoke(ctx)


@contextlib.contextmanager
def _usage_error_on_one_line() -> Iterator[None]:
    try:
        yield
    except click_exceptions.UsageError as error:
        if isinstance(error, getattr(click_exceptions, "NoArgsIsHelpError", ())):
            raise  # a bare `decodekit` or `decodekit models` asks for the help text
        hint = f" (see '{error.ctx.command_path} --help')" if error.ctx else ""
        _fail(error.format_message().rstrip(".") + hint)


def _fail(message: str) -> None:
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    raise typer.Exit(USAGE_ERROR) from None
