"""View 3: φ of every visual token at a layer over the image with sink tokens framed, and sink counts per layer."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image, ImageDraw

from var_core.trace import Trace
from viz.canvas import colorbar, hstack, titled
from viz.colors import OUTLINE
from viz.figures import NEUTRAL, SELECTED, bars, few_ticks, new_figure, styled
from viz.heatmap import blend, outline_boxes
from var_core.layout import on_cells
from viz.queries import check_layer_head, view_of, view_outlines


def visual_sink_counts(trace: Trace) -> np.ndarray:
    """[L] number of visual sink tokens per layer, over every image token (also tiles not drawn on the grid)."""
    return trace.sink_mask[:, trace.all_image_positions].sum(1)


def frame_cells(image: Image.Image, cells: np.ndarray, grid: tuple[int, int], width: int = 3) -> Image.Image:
    """Draw a frame around each True cell of `cells` [rows, cols] on an image that shows the whole grid."""
    rows, cols = grid
    draw = ImageDraw.Draw(image)
    for row, col in zip(*np.nonzero(cells)):
        box = (col * image.width // cols, row * image.height // rows,
               (col + 1) * image.width // cols - 1, (row + 1) * image.height // rows - 1)
        draw.rectangle(box, outline=OUTLINE, width=width)
    return image


def phi_overlay(trace: Trace, layer: int, cmap: str = "cividis", alpha: float = 0.65,
                short_side: int = 336, view: str | None = None) -> Image.Image:
    """φ(x) of each visual token entering `layer`, over the image; visual sinks (φ > τ) framed in vermillion.
    view: a name of `trace.view_list` (None: the whole canvas, every visual token)."""
    check_layer_head(trace, layer)
    tau = float(trace.settings.get("tau", np.inf))
    image, cells = view_of(trace, view)
    phi = on_cells(trace.phi_visual[layer], cells)
    sinks = on_cells(trace.visual_sinks[layer], cells)
    vmax = float(max(np.nanmax(phi), tau * 1.05 if np.isfinite(tau) else 0.0))
    panel = Image.fromarray(blend(image, phi, 0.0, vmax, cmap, False, alpha, short_side))
    outline_boxes(panel, cells.shape, view_outlines(trace, view))
    frame_cells(panel, sinks, cells.shape, width=int(np.clip(min(panel.size) // (8 * max(cells.shape)), 1, 3)))
    marks = {f"τ = {tau:g}": tau} if np.isfinite(tau) else None
    bar = colorbar(panel.height, 0.0, vmax, cmap, False, "φ(x) sink-dimension value", marks=marks)
    title = f"φ of visual tokens entering layer {layer}: {int(sinks.sum())} sink(s) framed (φ > τ = {tau:g})"
    return titled(hstack([panel, bar], gap=6), title)


@styled
def sink_count_strip(trace: Trace, layer: int | None = None) -> Figure:
    """Bar per layer: how many visual tokens are sinks (φ > τ); `layer` highlighted."""
    counts = visual_sink_counts(trace)
    figure = new_figure(max(4.5, 0.16 * len(counts) + 1.2), 2.4, bottom=0.55)
    axes = figure.add_subplot()
    bars(axes, counts, [SELECTED if index == layer else NEUTRAL for index in range(len(counts))])
    axes.set_xlabel("layer" + ("" if layer is None else f" (vermillion: layer {layer})"))
    axes.set_ylabel("visual sinks")
    figure.text(0.01, 0.98, f"Visual sink tokens per layer (φ > τ = {trace.settings.get('tau', float('nan')):g})",
                va="top", fontsize=10)
    few_ticks(axes, x=10)
    axes.yaxis.set_major_locator(MaxNLocator(4, integer=True))
    return figure
