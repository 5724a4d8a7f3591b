"""PNG plots for the report (matplotlib's Agg backend: no display needed)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from decodekit.bench.metrics import OVERALL, REFERENCE, Summary


def plot_speedup(summary: Summary, path: Path) -> None:
    """Grouped bars: speedup vs AR per category (and overall), one bar per method."""
    categories = [*summary.categories, OVERALL]
    methods = _compared_methods(summary)
    width = 0.8 / max(len(methods), 1)
    fig, ax = plt.subplots(figsize=(max(8.0, 1.2 * len(categories) + 0.3 * len(methods) + 3), 4.5))
    for i, method in enumerate(methods):
        cells = [summary.get(method, c) for c in categories]
        # NaN leaves a gap: a missing speedup must not look like a measured 0×.
        values = [cell.speedup if cell and cell.speedup is not None else math.nan for cell in cells]
        offsets = [x - 0.4 + (i + 0.5) * width for x in range(len(categories))]
        bars = ax.bar(offsets, values, width, label=_legend_label(summary, method))
        ax.bar_label(bars, labels=["" if math.isnan(v) else f"{v:.2f}" for v in values], fontsize=7)
    ax.axhline(1.0, color="black", linestyle="--", linewidth=1, label="decodekit AR")
    ax.set_xticks(range(len(categories)), categories, rotation=20)
    ax.set_ylabel("speedup vs decodekit AR (×)")
    ax.set_title("Speedup: ratio of mean per-question tokens/s")
    ax.margins(y=0.1)  # room for the value labels
    _legend_outside(ax)
    _save(fig, path)


def plot_tau_histogram(summary: Summary, path: Path) -> None:
    """Grouped bars: share of verification steps that committed k tokens, per method."""
    cells = [summary.get(m, OVERALL) for m in _compared_methods(summary)]
    hists = {cell.method: cell.accepted_hist for cell in cells if cell is not None and cell.accepted_hist}
    fig, ax = plt.subplots(figsize=(9, 4.5))
    if hists:
        ks = range(1, max(max(h) for h in hists.values()) + 1)
        width = 0.8 / len(hists)
        for i, (method, hist) in enumerate(hists.items()):
            steps = sum(hist.values())
            tau = summary.cell(method, OVERALL).tau
            label = f"{method} (τ = {tau:.2f})" if tau is not None else method
            ax.bar([k - 0.4 + (i + 0.5) * width for k in ks], [hist.get(k, 0) / steps for k in ks], width, label=label)
        ax.set_xticks(list(ks))
        _legend_outside(ax)
    else:
        ax.text(0.5, 0.5, "no method reports verification steps", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("tokens committed per verification step")
    ax.set_ylabel("share of steps")
    ax.set_title("Accepted tokens per step (all categories)")
    _save(fig, path)


def _compared_methods(summary: Summary) -> list[str]:
    """Every method but AR, which is the reference line; AR alone if it is all there is."""
    others = [m for m in summary.methods if m != REFERENCE]
    return others or list(summary.methods)


def _legend_label(summary: Summary, method: str) -> str:
    cell = summary.get(method, OVERALL)
    return method if cell is None or cell.backend == "decodekit" else f"{method} [{cell.backend}]"


def _legend_outside(ax) -> None:
    """Right of the axes: inside, the legend hides bars whatever corner it picks."""
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)


def _save(fig, path: Path) -> None:
    try:
        fig.tight_layout()
        fig.savefig(path, dpi=120)
    finally:
        plt.close(fig)  # figures are global state in pyplot: never leak one on error
