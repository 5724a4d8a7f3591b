"""The `decodekit` command. Argument parsing only: the work happens in the library."""

from __future__ import annotations

import typer

from decodekit.cli.bench import bench
from decodekit.cli.bench_quality import bench_quality
from decodekit.cli.bench_structured import bench_structured
from decodekit.cli.errors import OneLineUsageErrors
from decodekit.cli.generate import generate
from decodekit.cli.models import models_app
from decodekit.cli.serve import serve
from decodekit.cli.train import train_app

app = typer.Typer(cls=OneLineUsageErrors, help="decodekit: decode language models faster, better and structured.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
                  rich_markup_mode=None)  # help texts show method options in [brackets]: not markup
app.command()(generate)
app.command()(bench)
app.command()(bench_structured)
app.command()(bench_quality)
app.command()(serve)
app.add_typer(models_app, name="models")
app.add_typer(train_app, name="train")


def main() -> None:
    app()
