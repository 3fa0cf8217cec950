"""Matplotlib plumbing for the chart views: one light, readable style; figures made without pyplot (no global state)."""

from __future__ import annotations

import functools
import io
import sys

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullLocator
from PIL import Image

STYLE = {
    "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "xtick.labelsize": 9, "ytick.labelsize": 9,
    "legend.fontsize": 9, "figure.facecolor": "white", "axes.facecolor": "white", "text.color": "#141414",
    "axes.labelcolor": "#141414", "xtick.color": "#141414", "ytick.color": "#141414", "axes.spines.top": False,
    "axes.spines.right": False, "figure.dpi": 100, "savefig.dpi": 100,
}
SELECTED = "#D55E00"  # Okabe–Ito vermillion: selected heads, sinks
OTHER = "#0072B2"  # Okabe–Ito blue: everything else
NEUTRAL = "#999999"


def in_style(style: dict):
    """A decorator that runs a figure-making function inside the matplotlib settings `style`."""
    def decorate(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            with matplotlib.rc_context(style):
                return view(*args, **kwargs)
        return wrapper
    return decorate


styled = in_style(STYLE)  # the views' shared style


def _png(figure: Figure) -> bytes:
    """The figure as PNG bytes (IPython's image/png output)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def in_jupyter(figure: Figure) -> Figure:
    """`figure`, with a running IPython shell (Jupyter) told to show matplotlib Figures as PNG: pyplot-free figures
    never load the inline backend that would register that formatter, and would print as `<Figure size …>`."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is not None:
        shell.display_formatter.formatters["image/png"].for_type(Figure, _png)
    return figure


def new_figure(width: float, height: float, left: float = 0.8, right: float = 0.2, top: float = 0.4,
               bottom: float = 0.6, hspace: float = 0.15) -> Figure:
    """A pyplot-free Agg Figure (needs no closing; displays in Jupyter) with fixed margins in inches (constrained
    layout costs ~50 ms)."""
    figure = in_jupyter(Figure(figsize=(width, height)))
    FigureCanvasAgg(figure)
    figure.subplots_adjust(left=left / width, right=1 - right / width, top=1 - top / height, bottom=bottom / height,
                           hspace=hspace)
    return figure


def bars(axes, heights: np.ndarray, colours: list[str], width: float = 0.8) -> None:
    """Bars at x = 0 … n−1 as one PolyCollection (one artist instead of n patches)."""
    heights = np.asarray(heights, dtype=float)
    x = np.arange(len(heights), dtype=float)
    low, high, zero = x - width / 2, x + width / 2, np.zeros_like(heights)
    corners = np.stack([np.stack(pair, -1) for pair in ((low, zero), (low, heights), (high, heights), (high, zero))], 1)
    axes.add_collection(PolyCollection(corners, facecolors=colours, edgecolors="none"))
    axes.set_xlim(-0.6, len(heights) - 0.4)
    axes.set_ylim(min(0.0, heights.min(initial=0.0)), max(heights.max(initial=0.0) * 1.08, 1e-9))


def log_y(axes) -> None:
    """Log y axis with plain decade labels and no minor ticks (mathtext labels and minor ticks cost ~60 ms)."""
    axes.set_yscale("log")
    axes.yaxis.set_major_locator(LogLocator(base=10, numticks=6))
    axes.yaxis.set_minor_locator(NullLocator())
    axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))


def few_ticks(axes, x: int = 6, y: int = 5) -> None:
    """Cap the number of major ticks (each tick costs ~2 ms to build and draw)."""
    axes.xaxis.set_major_locator(MaxNLocator(x, integer=True))
    if axes.get_yscale() != "log":
        axes.yaxis.set_major_locator(MaxNLocator(y))


def key(axes, entries: list[tuple[str, str]], corner: str = "upper right") -> None:
    """Coloured labels stacked in a corner of the axes: a legend without its box (cheaper, reads directly)."""
    top = corner.startswith("upper")
    x, align = (0.98, "right") if corner.endswith("right") else (0.02, "left")
    for index, (text, colour) in enumerate(entries):
        y = 0.98 - 0.08 * index if top else 0.04 + 0.08 * (len(entries) - 1 - index)
        axes.text(x, y, text, color=colour, fontsize=9, ha=align, va="top" if top else "bottom",
                  transform=axes.transAxes)


def reference_line(axes, y: float, label: str, style: str = "--") -> None:
    """A labelled horizontal threshold line (a text label, cheaper than a legend)."""
    axes.axhline(y, color="#141414", linestyle=style, linewidth=1)
    axes.text(1.0, y, f" {label}", transform=axes.get_yaxis_transform(), va="center", ha="left", fontsize=9)


def figure_image(figure: Figure) -> Image.Image:
    """Render a figure to an RGB PIL image (figures made without a canvas get an Agg one)."""
    if not hasattr(figure.canvas, "buffer_rgba"):
        FigureCanvasAgg(figure)
    figure.canvas.draw()
    return Image.fromarray(np.asarray(figure.canvas.buffer_rgba())[..., :3].copy())
