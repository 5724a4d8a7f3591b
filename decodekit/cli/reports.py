"""What the benchmark commands share: an output folder cleared of a previous run's report, and
their progress bar (on stderr, so stdout stays clean)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from decodekit.errors import DecodekitError


def clear_old_report(out: Path) -> None:
    """A previous run's report must not pass for this run's if this one stops early."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DecodekitError(f"cannot create the output folder {out}: {error.strerror}") from error
    (out / "report.md").unlink(missing_ok=True)


def progress_bar(console: Console, label_width: int) -> Progress:
    return Progress(TextColumn(f"{{task.description:>{label_width}}}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console)
