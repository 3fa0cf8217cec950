"""View 2: every head of every layer as a small heatmap tile (layers = rows, heads = columns), one numpy mosaic."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from var_core.trace import Trace
from viz.canvas import BACKGROUND, INK, colorbar, font, frame_selection, row_labels, text_size, titled
from viz.colors import OUTLINE, lut, normalize, value_range
from viz.queries import captured_slot, head_maps, layers_note, query_label, selected_heads

SCALES = ("tile", "shared")


def tile_shape(grid: tuple[int, int], tile: int) -> tuple[int, int]:
    """(height, width) px of one tile: whole px per patch, the longer grid side about `tile` px."""
    per_patch = max(1, tile // max(grid))
    return grid[0] * per_patch, grid[1] * per_patch


def mosaic(maps: np.ndarray, outlined: np.ndarray, tile: int = 48, gap: int = 5, cmap: str = "viridis",
           vmin: float = 0.0, vmax: float = 1.0, log: bool = False) -> Image.Image:
    """[L, H, rows, cols] maps → RGB mosaic image; tiles where `outlined` [L, H] is True get a frame in the gap.

    Works on one byte per pixel: 254 colormap levels plus two reserved indices (background, frame), coloured at
    the end by PIL's palette conversion (10× faster than a numpy table gather at 32×32 heads).
    """
    layers, heads, rows, cols = maps.shape
    tile_h, tile_w = tile_shape((rows, cols), tile)
    per_patch = tile_h // rows
    levels = len(lut(cmap, 254))
    background, frame_index = levels, levels + 1
    table = np.vstack([lut(cmap, levels), np.array([BACKGROUND, OUTLINE], dtype=np.uint8)])
    index = (np.nan_to_num(normalize(maps, vmin, vmax, log)) * (levels - 1)).round().astype(np.uint8)
    index[np.isnan(maps)] = background  # cells without a token (between a tiled model's views)
    cells = np.full((layers, heads, tile_h + gap, tile_w + gap), background, dtype=np.uint8)
    half = gap // 2
    frame = max(1, min(2, half))
    cells[outlined, half - frame:half + tile_h + frame, half - frame:half + tile_w + frame] = frame_index
    cells[:, :, half:half + tile_h, half:half + tile_w] = np.repeat(np.repeat(index, per_patch, 2), per_patch, 3)
    canvas = Image.fromarray(cells.transpose(0, 2, 1, 3).reshape(layers * (tile_h + gap), heads * (tile_w + gap)), "P")
    canvas.putpalette(table.ravel().tolist())
    return canvas.convert("RGB")


def frame_tile(draw: ImageDraw.ImageDraw, left: int, top: int, tile: tuple[int, int], gap: int, row: int, head: int,
               width: int) -> None:
    """Frame tile (`row`, `head`) of a `mosaic` pasted at (left, top) as the selection, inside the tile (the gap keeps
    its vermillion frame), lines `width` px."""
    tile_h, tile_w = tile
    x, y = left + head * (tile_w + gap) + gap // 2, top + row * (tile_h + gap) + gap // 2
    frame_selection(draw, (x, y, x + tile_w - 1, y + tile_h - 1), width)


def labelled_mosaic(maps: np.ndarray, outlined: np.ndarray, title: str, scale: str = "tile", log: bool = False,
                    cmap: str = "viridis", tile: int = 48, gap: int = 5,
                    layers: Sequence[int] | None = None, row: int | None = None,
                    head: int | None = None) -> Image.Image:
    """Plain-array layer×head grid with L/H labels, outlined tiles, a colour bar and a title.

    layers: the model layer of each row, for its label (None: rows are layers 0, 1, …). row: the selected row, its
    label white on black; with head, that tile framed in black and white.

    scale="tile": each tile divided by its own maximum (shows where every head looks; sinks show as one bright
    cell); scale="shared": one colour scale for all tiles (shows which heads attend to the image at all).
    """
    if scale not in SCALES:
        raise ValueError(f"scale={scale!r} must be one of {SCALES}")
    if scale == "tile":
        peak = np.nanmax(maps, axis=(2, 3), keepdims=True)
        scaled = np.divide(maps, peak, out=np.zeros_like(maps, dtype=np.float32), where=peak > 0)
        maps = np.where(np.isnan(maps), np.nan, scaled)
        vmin, vmax = value_range(maps, None, 1.0, log) if log else (0.0, 1.0)
        label = "attention / tile max"
    else:
        vmin, vmax = value_range(maps, None, None, log)
        label = "attention weight"
    body = mosaic(maps, outlined, tile, gap, cmap, vmin, vmax, log)
    heads = outlined.shape[1]
    names = [f"L{layer}" for layer in (range(len(outlined)) if layers is None else layers)]
    tile_h, tile_w = tile_shape(maps.shape[2:], tile)
    size = int(np.clip(min(tile_h, tile_w) * 0.45 + 4, 9, 13))
    left = max(text_size(name, size)[0] for name in names) + 10
    top = text_size("H0", size)[1] + 10
    out = Image.new("RGB", (left + body.width, top + body.height), BACKGROUND)
    out.paste(body, (left, top))
    draw = ImageDraw.Draw(out)
    step = max(1, int(np.ceil(text_size(f"H{heads - 1}", size)[0] / (tile_w + gap) * 1.2)))
    for column in range(0, heads, step):
        draw.text((left + column * (tile_w + gap) + (tile_w + gap) // 2, top - 4), f"H{column}", fill=INK,
                  font=font(size), anchor="mb")
    step = max(1, int(np.ceil(text_size("L0", size)[1] / (tile_h + gap) * 1.4)))
    row_labels(draw, left - 5, top, tile_h + gap, names, size, step, row)
    if row is not None and head is not None:
        frame_tile(draw, left, top, (tile_h, tile_w), gap, row, head, int(np.clip(tile_h // maps.shape[2] // 2, 1, 2)))
    bar = colorbar(max(120, min(out.height - top, 400)), vmin, vmax, cmap, log, label + (" (log)" if log else ""))
    full = Image.new("RGB", (out.width + bar.width + 8, out.height), BACKGROUND)
    full.paste(out, (0, 0))
    full.paste(bar, (out.width + 8, top))
    return titled(full, title)


def head_grid(trace: Trace, query: int | str = "all", scale: str = "tile", log: bool = False, cmap: str = "viridis",
              tile: int = 48, raw: bool = False, layer: int | None = None, head: int | None = None,
              view: str | None = None) -> Image.Image:
    """All heads' text→visual maps for `query`, one row per captured layer; heads selected as image-centric in those
    rows are framed in vermillion. raw=True shows attention before VAR. layer: the current layer, its label marked;
    with head, that tile framed in black and white. view: a name of `trace.view_list` (None: the whole canvas)."""
    maps = head_maps(trace, query, raw, view)
    outlined = selected_heads(trace, query)
    title = (f"Layers × heads{layers_note(trace)}, {query_label(trace, query)}; framed: image-centric heads "
             f"({int(outlined.sum())} of {outlined.size})")
    row = None if layer is None else captured_slot(trace, layer, head)
    return labelled_mosaic(maps, outlined, title, scale, log, cmap, tile, layers=trace.layers_captured, row=row,
                           head=head)
