"""Where every visual token lies on the picture: a canvas of token cells with the processor's views in place.

A tiled model's processor cuts the image into views (tiles, and a global image / thumbnail / base view); each view's
tokens form a raster over its pixels. The canvas puts the tiles back together where they were cut from, the global
view beside them, and tokens with no place on the image (LLaVA-NeXT's row newlines) in cells of their own, so every
visual token is drawn exactly once. `cells[r, c]` is the index into the visual tokens (token order) drawn at canvas
cell (r, c), `HOLE` where none (the gap between views). `views` name the boxes a user can look at alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

HOLE = -1
WHOLE = "whole image (tiles in place)"
GAP_COLOUR = (255, 255, 255)  # canvas between views: the page's background
SEPARATOR_COLOUR = (64, 64, 64)  # cells of tokens with no place on the image (row newlines)
MAX_CANVAS_SIDE = 2048  # px: cells are shrunk so the canvas's longer side stays within this


@dataclass(frozen=True)
class Block:
    """One raster of visual tokens as the processor cut it, placed at (top, left) cells on the canvas.

    tokens: [rows, cols] index into the visual tokens of each cell (HOLE: none). pixels: [h, w, 3] uint8 the cells
    cover, None for tokens with no place on the image. view: the name it is listed under (None: only in the whole)."""

    tokens: np.ndarray
    pixels: np.ndarray | None
    top: int = 0
    left: int = 0
    view: str | None = None


@dataclass(frozen=True)
class TokenLayout:
    """The canvas: `image` [H, W, 3] uint8, `cells` [rows, cols] token index per cell, `views` [{"name", "box"}]
    with box = [top, left, bottom, right] in cells (end exclusive); the first view is always the whole canvas."""

    image: np.ndarray
    cells: np.ndarray
    views: list[dict]


def raster(count: int, rows: int, cols: int, start: int = 0) -> np.ndarray:
    """[rows, cols] token indices start … start + rows·cols − 1 in raster order (`count` checks the total)."""
    if rows * cols != count:
        raise ValueError(f"{count} visual tokens do not fill a {rows}×{cols} raster")
    return np.arange(start, start + count, dtype=np.int32).reshape(rows, cols)


def single_view(image: np.ndarray, rows: int, cols: int) -> TokenLayout:
    """A model with one view: the image as the model saw it, its tokens in raster order."""
    return TokenLayout(image=image, cells=raster(rows * cols, rows, cols), views=[whole_view(rows, cols)])


def whole_view(rows: int, cols: int) -> dict:
    return {"name": WHOLE, "box": [0, 0, rows, cols]}


def compose(blocks: list[Block], groups: dict[str, list[str]] | None = None, cell: int | None = None) -> TokenLayout:
    """The canvas of `blocks`: each block's pixels resized onto its cells (`cell` px per token, default the first
    block's own pitch, shrunk to keep the canvas within `MAX_CANVAS_SIDE`); `groups` name views that span several
    blocks' views (e.g. "all tiles"). Raises if a cell is claimed twice."""
    rows = max(b.top + b.tokens.shape[0] for b in blocks)
    cols = max(b.left + b.tokens.shape[1] for b in blocks)
    first = next(b for b in blocks if b.pixels is not None)
    pitch = cell or max(1, first.pixels.shape[0] // first.tokens.shape[0])
    pitch = max(1, min(pitch, MAX_CANVAS_SIDE // max(rows, cols)))
    cells = np.full((rows, cols), HOLE, dtype=np.int32)
    canvas = np.empty((rows * pitch, cols * pitch, 3), dtype=np.uint8)
    canvas[:] = GAP_COLOUR
    boxes: dict[str, list[int]] = {}
    for block in blocks:
        height, width = block.tokens.shape
        area = cells[block.top:block.top + height, block.left:block.left + width]
        if (area != HOLE).any():
            raise ValueError("two blocks of visual tokens claim the same canvas cell")
        area[:] = block.tokens
        y, x = block.top * pitch, block.left * pitch
        target = canvas[y:y + height * pitch, x:x + width * pitch]
        if block.pixels is None:
            target[:] = SEPARATOR_COLOUR
        else:
            target[:] = np.asarray(Image.fromarray(block.pixels).resize((width * pitch, height * pitch),
                                                                        Image.Resampling.BILINEAR))
        if block.view:
            boxes[block.view] = [block.top, block.left, block.top + height, block.left + width]
    for name, members in (groups or {}).items():
        spans = np.array([boxes[member] for member in members])
        boxes[name] = [int(spans[:, 0].min()), int(spans[:, 1].min()), int(spans[:, 2].max()), int(spans[:, 3].max())]
    views = [whole_view(rows, cols)] + [{"name": name, "box": box} for name, box in boxes.items()]
    return TokenLayout(image=canvas, cells=cells, views=views)


def tile_grid(tiles: np.ndarray, tile_rows: int, tile_cols: int, per_side: tuple[int, int], start: int = 0,
              prefix: str = "tile") -> list[Block]:
    """Blocks for `tile_rows` × `tile_cols` tiles cut row by row, each a raster of `per_side` (rows, cols) tokens
    from `start` on; `tiles` [n, h, w, 3] uint8 their pixels. Views are named "<prefix> r,c" (1-based)."""
    rows, cols = per_side
    per_tile = rows * cols
    blocks = []
    for index in range(tile_rows * tile_cols):
        r, c = divmod(index, tile_cols)
        blocks.append(Block(raster(per_tile, rows, cols, start + index * per_tile), tiles[index], r * rows, c * cols,
                            f"{prefix} {r + 1},{c + 1}"))
    return blocks


def check_every_token_once(cells: np.ndarray, count: int) -> None:
    """Raise unless each of the `count` visual tokens is drawn in exactly one cell (and no cell names another)."""
    drawn = cells[cells != HOLE]
    if len(drawn) != count or not np.array_equal(np.sort(drawn), np.arange(count)):
        raise ValueError(f"the layout draws {len(np.unique(drawn))} distinct of {count} visual tokens "
                         f"({len(drawn)} cells); every visual token must be drawn exactly once")


def view_box(views: list[dict], name: str | None) -> list[int]:
    """The [top, left, bottom, right] box of view `name` (None: the whole canvas); a ValueError naming the views."""
    if name is None:
        return views[0]["box"]
    for view in views:
        if view["name"] == name:
            return view["box"]
    raise ValueError(f"view {name!r} does not exist; views: {', '.join(repr(v['name']) for v in views)}")


def on_cells(values: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """[..., N_vis] values in token order → [..., rows, cols] at their cells; holes NaN (False for booleans)."""
    values = np.asarray(values)
    if values.dtype != bool:
        values = values.astype(np.float32, copy=False)
    if cells.size and cells.max() >= values.shape[-1]:
        raise ValueError(f"{values.shape[-1]} visual values do not cover the layout's {cells.max() + 1} tokens")
    out = values[..., np.maximum(cells, 0)]
    out[..., cells == HOLE] = False if values.dtype == bool else np.nan
    return out


def cell_of(cells: np.ndarray, token: int) -> tuple[int, int] | None:
    """(row, col) of the cell drawing visual token `token`, None when `cells` (a view's) does not draw it."""
    found = np.argwhere(cells == token)
    return (int(found[0][0]), int(found[0][1])) if len(found) else None
