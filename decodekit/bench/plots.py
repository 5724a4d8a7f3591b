"""PNG plots for the report (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

from decodekit.bench.metrics import OVERALL, Summary  # noqa: E402


def plot_speedup(summary: Summary, path: Path) -> None:
    """Grouped bars: speedup vs AR per category, one bar per method."""
    categories = [*summary.categories, OVERALL]
    methods = summary.methods
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(categories)), 4))
    for i, method in enumerate(methods):
        values = [(summary.cells.get((method, c)).speedup or 0) if summary.cells.get((method, c)) else 0 for c in categories]
        ax.bar([x + i * width - 0.4 + width / 2 for x in range(len(categories))], values, width, label=method)
    ax.axhline(1.0, color="black", linestyle="--", linewidth=1)
    ax.set_xticks(range(len(categories)), categories, rotation=20)
    ax.set_ylabel("speedup vs decodekit AR")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_tau_histogram(summary: Summary, path: Path) -> None:
    """Tokens committed per step, as a share of steps, for each method that reports steps."""
    fig, ax = plt.subplots(figsize=(6, 4))
    plotted = 0
    for method in summary.methods:
        hist = summary.cell(method, OVERALL).accepted_hist
        if not hist:
            continue
        total = sum(hist.values())
        ax.plot(list(hist), [v / total for v in hist.values()], marker="o", label=method)
        plotted += 1
    ax.set_xlabel("tokens committed per verification step")
    ax.set_ylabel("share of steps")
    ax.set_yscale("log")
    if plotted:
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
