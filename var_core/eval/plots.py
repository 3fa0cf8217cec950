"""Result plots as pyplot-free matplotlib Figures (safe in threads; the app and the CLI both use them)."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from viz.figures import in_jupyter, in_style

METRICS = ("accuracy", "precision", "recall", "f1", "yes_ratio")
SIZE = (6.4, 4.8)  # inches, 4:3 for every plot: a gallery shows each whole, all at one scale
STYLE = {"font.size": 11, "axes.titlesize": 12, "axes.labelsize": 11, "xtick.labelsize": 10, "ytick.labelsize": 10,
         "legend.fontsize": 10}
sized = in_style(STYLE)  # fonts readable when a SIZE figure is shown about 400 px wide


def result_figure() -> Figure:
    """A pyplot-free figure of SIZE with constrained layout, for one result plot (it displays in Jupyter)."""
    return in_jupyter(Figure(figsize=SIZE, layout="constrained"))


@sized
def metric_bars(rows: list[dict], title: str, metrics=METRICS) -> Figure:
    """Grouped bars: one group per metric, one bar per condition (row); the conditions' key above the bars."""
    figure = result_figure()
    axes = figure.add_subplot()
    width = 0.8 / max(len(rows), 1)
    x = np.arange(len(metrics))
    for k, row in enumerate(rows):
        values = [row.get(m, np.nan) for m in metrics]
        bars = axes.bar(x + (k - (len(rows) - 1) / 2) * width, values, width, label=row["condition"])
        axes.bar_label(bars, fmt="%.2f", fontsize=9, padding=2, rotation=90)
    axes.set_xticks(x, [m.replace("_", "-") for m in metrics])
    axes.set_ylim(0, 1.4)
    axes.set_yticks(np.linspace(0, 1, 6))
    axes.set_title(title)
    axes.legend(loc="upper center", ncols=min(len(rows), 2), frameon=False)
    return figure


@sized
def heatmap(matrix, row_labels, col_labels, title: str, xlabel: str, ylabel: str, centre: float | None = None,
            cbar_label: str = "F1") -> Figure:
    """Annotated heatmap; with `centre`, a diverging map around it (e.g. the VAR-off F1)."""
    matrix = np.asarray(matrix, dtype=float)
    figure = result_figure()
    axes = figure.add_subplot()
    if centre is None:
        image = axes.imshow(matrix, cmap="viridis", aspect="auto")
    else:
        spread = max(float(np.nanmax(np.abs(matrix - centre))), 1e-3)
        image = axes.imshow(matrix, cmap="RdBu", vmin=centre - spread, vmax=centre + spread, aspect="auto")
    for (i, j), value in np.ndenumerate(matrix):
        axes.text(j, i, "—" if np.isnan(value) else f"{value:.3f}", ha="center", va="center", fontsize=12)
    axes.set_xticks(range(len(col_labels)), col_labels)
    axes.set_yticks(range(len(row_labels)), row_labels)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    figure.colorbar(image, ax=axes, label=cbar_label, shrink=0.8)
    return figure


@sized
def error_bars(labels, means, stds, title: str, ylabel: str, reference: float | None = None) -> Figure:
    """Bars with ± std whiskers; an optional dashed reference line (e.g. the unmasked accuracy)."""
    figure = result_figure()
    axes = figure.add_subplot()
    x = np.arange(len(labels))
    bars = axes.bar(x, means, yerr=stds, capsize=4, color=["#888888", "#d62728", "#1f77b4", "#2ca02c"][:len(labels)])
    axes.bar_label(bars, labels=[f"{m:.3f}±{s:.3f}" if s else f"{m:.3f}" for m, s in zip(means, stds)], fontsize=10,
                   padding=2)
    if reference is not None:
        axes.axhline(reference, ls="--", lw=1, color="black")
    axes.set_xticks(x, labels)
    axes.set_ylabel(ylabel)
    axes.set_ylim(0, max(1.0, float(np.nanmax(np.add(means, stds))) * 1.15) if len(means) else 1)
    axes.set_title(title)
    return figure


@sized
def scatter(x, y, title: str, xlabel: str, ylabel: str, highlight=None, log_y: bool = False) -> Figure:
    """Point cloud (e.g. φ vs contribution), highlighted points in red."""
    figure = result_figure()
    axes = figure.add_subplot()
    x, y = np.asarray(x, float), np.asarray(y, float)
    mask = np.zeros(len(x), bool) if highlight is None else np.asarray(highlight, bool)
    axes.scatter(x[~mask], y[~mask], s=6, alpha=0.35, color="#1f77b4", label="visual tokens", rasterized=True)
    if mask.any():
        axes.scatter(x[mask], y[mask], s=14, color="#d62728", label="visual sinks (φ > τ)")
    if log_y:
        axes.set_yscale("log")
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.legend(frameon=False, markerscale=2)
    return figure


@sized
def grid_map(values, title: str, label: str) -> Figure:
    """[rows, cols] values over the visual-token grid (e.g. how often each cell is a sink)."""
    values = np.asarray(values, dtype=float)
    figure = result_figure()
    axes = figure.add_subplot()
    image = axes.imshow(values, cmap="magma", vmin=0, vmax=max(float(values.max()), 1e-6))
    axes.set_title(title)
    axes.set_xticks([])
    axes.set_yticks([])
    figure.colorbar(image, ax=axes, label=label, shrink=0.8)
    return figure
