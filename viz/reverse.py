"""View 9, the reverse view: from one patch back to the text — which tokens attend to it, and in which layers and
heads. `patch` is a visual token: an index into `trace.visual_positions`, drawn at its cell of `trace.cell_map`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from var_core.layout import cell_of
from var_core.trace import Trace
from viz.canvas import BACKGROUND, INK, colorbar, display_size, font, hstack, row_labels, text_size, titled
from viz.colors import OUTLINE, value_range
from viz.grid import frame_tile, mosaic
from viz.heatmap import check_patch
from viz.queries import captured_slot, layers_note
from viz.sinks import frame_cells
from viz.tokens import scored_entries

CELL, GAP = 20, 5  # px of one layer×head cell and of the gap around it (the frame of a selected head sits there)


def patch_scores(trace: Trace, patch: int, layer: int | None = None, head: int | None = None) -> np.ndarray:
    """[Q] attention each captured query row gives visual token `patch` (the attention the model used), at `layer`
    (None = mean over the captured layers) and `head` (None = mean over heads)."""
    check_patch(trace, patch)
    slot = captured_slot(trace, trace.layers_captured[0] if layer is None else layer, head)
    attn = trace.attn_to_visual[:, :, :, patch]
    attn = (attn if layer is None else attn[slot:slot + 1]).mean(0, dtype=np.float32)
    return attn.mean(0) if head is None else attn[head]


def tokens_attending(trace: Trace, patch: int, layer: int | None = None,
                     head: int | None = None) -> list[tuple[str, float | None]]:
    """[(token, score)] for `gr.HighlightedText`: how much each text token attends to `patch` (`patch_scores` of its
    query row), divided by the largest score so the strongest token is 1.0 (all 0.0 when none attends); None for
    tokens that are not captured query rows. Entries are those of `viz.tokens.token_strip` (the image collapses to
    one entry), so `viz.tokens.strip_rows` maps a click to a query row here too."""
    return scored_entries(trace, patch_scores(trace, patch, layer, head), relative=True)


def sink_marks(draw: ImageDraw.ImageDraw, x: int, top: int, own: np.ndarray, other: np.ndarray) -> None:
    """A diamond per layer row at column `x`: filled where the patch itself is a visual sink (`own` [rows]), hollow
    where only other visual tokens are (`other` [rows])."""
    radius = CELL // 2 - 2
    for layer in np.nonzero(own | other)[0]:
        cx, cy = x + (CELL + GAP) // 2, top + layer * (CELL + GAP) + (CELL + GAP) // 2
        corners = [(cx, cy - radius), (cx + radius, cy), (cx, cy + radius), (cx - radius, cy)]
        draw.polygon(corners, fill=OUTLINE if own[layer] else None, outline=OUTLINE, width=2)


def locator(trace: Trace, patch: int, short_side: int = 120) -> Image.Image:
    """The image, small, with `patch` framed: where the patch is."""
    height, width = trace.image.shape[:2]
    thumbnail = Image.fromarray(trace.image).resize(display_size(width, height, short_side), Image.BILINEAR)
    return frame_cells(thumbnail, trace.cell_map == patch, trace.grid, width=2)


def layer_head_cells(values: np.ndarray, outlined: np.ndarray, own: np.ndarray, other: np.ndarray, vmin: float,
                     vmax: float, cmap: str = "viridis", log: bool = False,
                     layers: Sequence[int] | None = None, row: int | None = None,
                     head: int | None = None) -> Image.Image:
    """Plain arrays: one `CELL`-px cell per layer (row) and head (column) coloured by `values` [rows, H], cells where
    `outlined` [rows, H] is True framed, `sink_marks` (`own`, `other` [rows]) right of the rows, L/H labels (`layers`:
    the model layer of each row; None: 0, 1, …); the selected `row`'s label white on black, with `head` its cell
    framed in black and white."""
    body = mosaic(values[:, :, None, None], outlined, CELL, GAP, cmap, vmin, vmax, log)
    heads = values.shape[1]
    names = [f"L{layer}" for layer in (range(len(values)) if layers is None else layers)]
    size, pitch = 12, CELL + GAP
    left, top = max(text_size(name, size)[0] for name in names) + 10, text_size("H0", size)[1] + 10
    out = Image.new("RGB", (left + body.width + pitch, top + body.height), BACKGROUND)
    out.paste(body, (left, top))
    draw = ImageDraw.Draw(out)
    step = max(1, int(np.ceil(text_size(f"H{heads - 1}", size)[0] / pitch * 1.2)))
    for column in range(0, heads, step):
        draw.text((left + column * pitch + pitch // 2, top - 4), f"H{column}", fill=INK, font=font(size), anchor="mb")
    row_labels(draw, left - 5, top, pitch, names, size, selected=row)
    if row is not None and head is not None:
        frame_tile(draw, left, top, (CELL, CELL), GAP, row, head, width=2)
    sink_marks(draw, left + body.width, top, own, other)
    return out


def patch_layer_head(trace: Trace, patch: int, log: bool = False, cmap: str = "viridis", layer: int | None = None,
                     head: int | None = None) -> Image.Image:
    """Captured layers × heads cells coloured by the attention `patch` receives (mean over the captured query rows,
    the attention the model used, one scale for all cells); image-centric heads framed in vermillion; a diamond at
    the right end of a layer's row where the patch is a visual sink (filled) or only other visual tokens are
    (hollow); beside them the colour bar and the image with the patch framed. layer: the current layer, its label
    marked; with head, that cell framed in black and white."""
    check_patch(trace, patch)
    row = None if layer is None else captured_slot(trace, layer, head)
    values = trace.attn_to_visual[:, :, :, patch].mean(2, dtype=np.float32)
    outlined = trace.selected.any(-1)
    layers = trace.layers_captured
    sinks = trace.visual_sinks[layers]
    vmin, vmax = value_range(values, None if log else 0.0, None, log)
    cells = layer_head_cells(values, outlined, sinks[:, patch], sinks.any(1) & ~sinks[:, patch], vmin, vmax, cmap, log,
                             layers, row, head)
    top = cells.height - len(values) * (CELL + GAP)  # the head labels' band: the bar and the locator start below it
    label = "attention" + (" (log)" if log else "")
    bar = colorbar(max(120, min(cells.height - top, 400)), vmin, vmax, cmap, log, label)
    side = hstack([bar, titled(locator(trace, patch), "the patch", 12)], gap=8)
    full = Image.new("RGB", (cells.width + 8 + side.width, max(cells.height, top + side.height)), BACKGROUND)
    full.paste(cells, (0, 0))
    full.paste(side, (cells.width + 8, top))
    row_col = cell_of(trace.cell_map, patch)
    key = (f"framed: image-centric heads ({int(outlined.sum())} of {outlined.size}); ◆ this patch is a visual sink "
           f"at that layer, ◇ only other visual tokens are (φ > τ = {trace.settings.get('tau', float('nan')):g})")
    title = (f"Attention to patch {patch} (row {row_col[0]}, col {row_col[1]}) per layer × head"
             f"{layers_note(trace)}, mean over all text queries")
    return titled(titled(full, key, 12), title)
