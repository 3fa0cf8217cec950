"""View 1: text→visual attention of one layer/head/query, on the patch grid, blended over the image."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from var_core.trace import Trace
from viz.canvas import colorbar, display_size, frame_selection, hstack, title_height, titled
from viz.colors import colorize, value_range
from var_core.layout import HOLE, cell_of, on_cells
from viz.queries import attention_values, head_label, query_label, view_of, view_outlines

VIEW_EDGE = (40, 40, 40)  # the thin line where a tiled model's tiles and views meet


def check_patch(trace: Trace, patch: int) -> None:
    """ValueError naming the valid range when `patch` is not one of the visual tokens."""
    count = len(trace.visual_positions)
    if isinstance(patch, bool) or not isinstance(patch, (int, np.integer)) or not 0 <= patch < count:
        raise ValueError(f"patch={patch!r} does not exist: the image has visual tokens 0 … {count - 1} (token "
                         "order; on a one-view image that is the raster order, patch = row·cols + col)")


def upsample(values: np.ndarray, size: tuple[int, int], smooth: bool = False) -> np.ndarray:
    """[rows, cols] → [height, width] for size=(width, height): patch blocks (nearest) or bilinear."""
    width, height = size
    if smooth:
        return np.asarray(Image.fromarray(values.astype(np.float32), mode="F").resize(size, Image.BILINEAR))
    rows, cols = values.shape
    return values[(np.arange(height) * rows // height)[:, None], (np.arange(width) * cols // width)[None, :]]


def blend(image: np.ndarray, values: np.ndarray, vmin: float, vmax: float, cmap: str = "viridis", log: bool = False,
          alpha: float = 0.6, short_side: int = 336, smooth: bool = False) -> np.ndarray:
    """[H, W, 3] uint8 image resized so its short side is `short_side`, in grey (so it does not tint the
    colormap), with the grid map coloured over it with opacity `alpha`."""
    size = display_size(image.shape[1], image.shape[0], short_side)
    base = np.asarray(Image.fromarray(image).convert("L").resize(size, Image.BILINEAR), dtype=np.float32)[..., None]
    drawn = np.isfinite(upsample(values, size))[..., None]  # cells without a token (between views) stay grey
    values = np.where(np.isfinite(values), values, vmin)
    colour = colorize(upsample(values, size, smooth), vmin, vmax, cmap, log).astype(np.float32)
    return np.where(drawn, (1.0 - alpha) * base + alpha * colour, base).round().astype(np.uint8)


def frame_patch(panel: Image.Image, grid: tuple[int, int], cell: tuple[int, int]) -> None:
    """Frame grid `cell` (row, col) of a panel showing the whole grid as the selection, inside the cell (exactly
    the pixels `upsample` gives it)."""
    rows, cols = grid
    row, col = cell
    left, top = -(-col * panel.width // cols), -(-row * panel.height // rows)
    right, bottom = -(-(col + 1) * panel.width // cols) - 1, -(-(row + 1) * panel.height // rows) - 1
    width = int(np.clip(min(right - left, bottom - top) // 6, 1, 2))
    frame_selection(ImageDraw.Draw(panel), (left, top, right, bottom), width)


def outline_boxes(panel: Image.Image, grid: tuple[int, int], boxes: list[list[int]]) -> None:
    """A thin dark line around each [top, left, bottom, right] cell box of a panel showing the whole grid: where a
    tiled model's tiles and views meet."""
    rows, cols = grid
    draw = ImageDraw.Draw(panel)
    for top, left, bottom, right in boxes:
        draw.rectangle((left * panel.width // cols, top * panel.height // rows,
                        right * panel.width // cols - 1, bottom * panel.height // rows - 1), outline=VIEW_EDGE)


def heatmap_image(image: np.ndarray, values: np.ndarray, title: str, label: str = "attention",
                  vmin: float | None = None, vmax: float | None = None, cmap: str = "viridis", log: bool = False,
                  alpha: float = 0.6, short_side: int = 336, smooth: bool = False,
                  cell: tuple[int, int] | None = None, outlines: list[list[int]] = ()) -> Image.Image:
    """Plain-array heatmap: `values` [rows, cols] over `image` [H, W, 3] (NaN: no token there, left grey), with a
    title and a colour bar; grid `cell` (row, col) framed in black and white; `outlines`: cell boxes edged thinly."""
    vmin, vmax = value_range(values, vmin, vmax, log)
    panel = Image.fromarray(blend(image, values, vmin, vmax, cmap, log, alpha, short_side, smooth))
    outline_boxes(panel, values.shape, outlines)
    if cell is not None:
        frame_patch(panel, values.shape, cell)
    bar = colorbar(panel.height, vmin, vmax, cmap, log, label + (" (log)" if log else ""))
    return titled(hstack([panel, bar], gap=6), title)


def heatmap_cell(image_shape: tuple[int, ...], cells: np.ndarray, point, short_side: int = 336) -> int | None:
    """The visual token (index into the visual tokens) under `point` (x, y in px) of a `heatmap_image` of `cells`
    drawn over an image of `image_shape` (H, W, …): what a click on the heatmap selects; None off the image (title,
    colour bar) or between views."""
    width, height = display_size(image_shape[1], image_shape[0], short_side)
    x, y = int(point[0]), int(point[1]) - title_height()
    if not (0 <= x < width and 0 <= y < height):
        return None
    token = int(cells[y * cells.shape[0] // height, x * cells.shape[1] // width])
    return None if token == HOLE else token


def attention_heatmap(trace: Trace, layer: int, head: int | None = None, query: int | str = "all",
                      log: bool = False, cmap: str = "viridis", raw: bool = False, patch: int | None = None,
                      view: str | None = None, **options) -> Image.Image:
    """Attention of `query` rows to each visual token at `layer` (`head`, None = mean over heads) over the image.

    raw=True shows the attention before VAR. patch: the selected visual token (index into `trace.visual_positions`),
    framed in black and white where the view draws it. view: a name of `trace.view_list` (None: the whole canvas,
    every visual token). options: vmin, vmax, alpha, short_side, smooth (see heatmap_image).
    """
    if patch is not None:
        check_patch(trace, patch)
    image, cells = view_of(trace, view)
    values = on_cells(attention_values(trace, layer, head, query, raw), cells)
    stage = "before VAR" if raw and trace.attn_to_visual_raw is not None else ("with VAR" if trace.var_applied
                                                                              else "baseline")
    title = f"Layer {layer}, {head_label(head)}, {query_label(trace, query)} ({stage})"
    title += "" if view is None or view == trace.view_list[0]["name"] else f" · {view}"
    return heatmap_image(image, values, title, "attention weight", cmap=cmap, log=log,
                         cell=None if patch is None else cell_of(cells, patch), outlines=view_outlines(trace, view),
                         **options)
