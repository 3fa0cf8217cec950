"""Result plots as pyplot-free matplotlib Figures (safe in threads; the app and the CLI both use them)."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

METRICS = ("accuracy", "precision", "recall", "f1", "yes_ratio")


def metric_bars(rows: list[dict], title: str, metrics=METRICS) -> Figure:
    """Grouped bars: one group per metric, one bar per condition (row)."""
    figure = Figure(figsize=(max(6.0, 1.3 * len(metrics) + 0.5 * len(rows)), 3.6), layout="constrained")
    axes = figure.add_subplot()
    width = 0.8 / max(len(rows), 1)
    x = np.arange(len(metrics))
    for k, row in enumerate(rows):
        values = [row.get(m, np.nan) for m in metrics]
        bars = axes.bar(x + (k - (len(rows) - 1) / 2) * width, values, width, label=row["condition"])
        axes.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
    axes.set_xticks(x, [m.replace("_", "-") for m in metrics])
    axes.set_ylim(0, 1.12)
    axes.set_title(title, fontsize=10)
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    return figure


def heatmap(matrix, row_labels, col_labels, title: str, xlabel: str, ylabel: str, centre: float | None = None,
            cbar_label: str = "F1") -> Figure:
    """Annotated heatmap; with `centre`, a diverging map around it (e.g. the VAR-off F1)."""
    matrix = np.asarray(matrix, dtype=float)
    figure = Figure(figsize=(1.0 + 0.9 * matrix.shape[1], 0.9 + 0.6 * matrix.shape[0]), layout="constrained")
    axes = figure.add_subplot()
    if centre is None:
        image = axes.imshow(matrix, cmap="viridis", aspect="auto")
    else:
        spread = max(float(np.nanmax(np.abs(matrix - centre))), 1e-3)
        image = axes.imshow(matrix, cmap="RdBu", vmin=centre - spread, vmax=centre + spread, aspect="auto")
    for (i, j), value in np.ndenumerate(matrix):
        axes.text(j, i, "—" if np.isnan(value) else f"{value:.3f}", ha="center", va="center", fontsize=8)
    axes.set_xticks(range(len(col_labels)), col_labels)
    axes.set_yticks(range(len(row_labels)), row_labels)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(title, fontsize=9)
    figure.colorbar(image, ax=axes, label=cbar_label, shrink=0.8)
    return figure


def error_bars(labels, means, stds, title: str, ylabel: str, reference: float | None = None) -> Figure:
    """Bars with ± std whiskers; an optional dashed reference line (e.g. the unmasked accuracy)."""
    figure = Figure(figsize=(max(5.6, 1.2 * len(labels)), 3.4), layout="constrained")
    axes = figure.add_subplot()
    x = np.arange(len(labels))
    bars = axes.bar(x, means, yerr=stds, capsize=4, color=["#888888", "#d62728", "#1f77b4", "#2ca02c"][:len(labels)])
    axes.bar_label(bars, labels=[f"{m:.3f}±{s:.3f}" if s else f"{m:.3f}" for m, s in zip(means, stds)], fontsize=7,
                   padding=2)
    if reference is not None:
        axes.axhline(reference, ls="--", lw=1, color="black")
    axes.set_xticks(x, labels, fontsize=8)
    axes.set_ylabel(ylabel)
    axes.set_ylim(0, max(1.0, float(np.nanmax(np.add(means, stds))) * 1.15) if len(means) else 1)
    axes.set_title(title, fontsize=9)
    return figure


def scatter(x, y, title: str, xlabel: str, ylabel: str, highlight=None, log_y: bool = False) -> Figure:
    """Point cloud (e.g. φ vs contribution), highlighted points in red."""
    figure = Figure(figsize=(4.8, 3.6), layout="constrained")
    axes = figure.add_subplot()
    x, y = np.asarray(x, float), np.asarray(y, float)
    mask = np.zeros(len(x), bool) if highlight is None else np.asarray(highlight, bool)
    axes.scatter(x[~mask], y[~mask], s=4, alpha=0.35, color="#1f77b4", label="visual tokens", rasterized=True)
    if mask.any():
        axes.scatter(x[mask], y[mask], s=10, color="#d62728", label="visual sinks (φ > τ)")
    if log_y:
        axes.set_yscale("log")
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(title, fontsize=9)
    axes.legend(fontsize=7, frameon=False)
    return figure


def grid_map(values, title: str, label: str) -> Figure:
    """[rows, cols] values over the visual-token grid (e.g. how often each cell is a sink)."""
    values = np.asarray(values, dtype=float)
    figure = Figure(figsize=(5.0, 3.8), layout="constrained")
    axes = figure.add_subplot()
    image = axes.imshow(values, cmap="magma", vmin=0, vmax=max(float(values.max()), 1e-6))
    axes.set_title(title, fontsize=9)
    axes.set_xticks([])
    axes.set_yticks([])
    figure.colorbar(image, ax=axes, label=label, shrink=0.8)
    return figure
