"""View 1: text→visual attention of one layer/head/query, on the patch grid, blended over the image."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from var_core.trace import Trace
from viz.canvas import colorbar, display_size, frame_selection, hstack, title_height, titled
from viz.colors import colorize, value_range
from viz.queries import attention_map, head_label, query_label


def check_patch(trace: Trace, patch: int) -> None:
    """ValueError naming the valid range when `patch` is not a cell of the visual grid."""
    rows, cols = trace.grid
    if isinstance(patch, bool) or not isinstance(patch, (int, np.integer)) or not 0 <= patch < rows * cols:
        raise ValueError(f"patch={patch!r} does not exist: the {rows}×{cols} grid has patches 0 … {rows * cols - 1} "
                         f"(raster order, patch = row·{cols} + col)")



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
    colour = colorize(upsample(values, size, smooth), vmin, vmax, cmap, log).astype(np.float32)
    return ((1.0 - alpha) * base + alpha * colour).round().astype(np.uint8)


def frame_patch(panel: Image.Image, grid: tuple[int, int], patch: int) -> None:
    """Frame grid cell `patch` (raster index) of a panel showing the whole grid as the selection, inside the cell
    (exactly the pixels `upsample` gives it)."""
    rows, cols = grid
    row, col = divmod(patch, cols)
    left, top = -(-col * panel.width // cols), -(-row * panel.height // rows)
    right, bottom = -(-(col + 1) * panel.width // cols) - 1, -(-(row + 1) * panel.height // rows) - 1
    width = int(np.clip(min(right - left, bottom - top) // 6, 1, 2))
    frame_selection(ImageDraw.Draw(panel), (left, top, right, bottom), width)


def heatmap_image(image: np.ndarray, values: np.ndarray, title: str, label: str = "attention",
                  vmin: float | None = None, vmax: float | None = None, cmap: str = "viridis", log: bool = False,
                  alpha: float = 0.6, short_side: int = 336, smooth: bool = False,
                  patch: int | None = None) -> Image.Image:
    """Plain-array heatmap: `values` [rows, cols] over `image` [H, W, 3], with a title and a colour bar; grid cell
    `patch` (raster index) framed in black and white."""
    vmin, vmax = value_range(values, vmin, vmax, log)
    panel = Image.fromarray(blend(image, values, vmin, vmax, cmap, log, alpha, short_side, smooth))
    if patch is not None:
        frame_patch(panel, values.shape, patch)
    bar = colorbar(panel.height, vmin, vmax, cmap, log, label + (" (log)" if log else ""))
    return titled(hstack([panel, bar], gap=6), title)


def heatmap_cell(image_shape: tuple[int, ...], grid: tuple[int, int], point, short_side: int = 336) -> int | None:
    """Raster index of the grid cell under `point` (x, y in px) of a `heatmap_image` drawn over an image of
    `image_shape` (H, W, …): what a click on the heatmap selects; None off the image (title, colour bar)."""
    width, height = display_size(image_shape[1], image_shape[0], short_side)
    x, y = int(point[0]), int(point[1]) - title_height()
    if not (0 <= x < width and 0 <= y < height):
        return None
    return (y * grid[0] // height) * grid[1] + x * grid[1] // width


def attention_heatmap(trace: Trace, layer: int, head: int | None = None, query: int | str = "all",
                      log: bool = False, cmap: str = "viridis", raw: bool = False, patch: int | None = None,
                      **options) -> Image.Image:
    """Attention of `query` rows to each visual token at `layer` (`head`, None = mean over heads) over the image.

    raw=True shows the attention before VAR. patch: the selected patch (raster index into `trace.grid`), framed in
    black and white. options: vmin, vmax, alpha, short_side, smooth (see heatmap_image).
    """
    if patch is not None:
        check_patch(trace, patch)
    values = attention_map(trace, layer, head, query, raw)
    stage = "before VAR" if raw and trace.attn_to_visual_raw is not None else ("with VAR" if trace.var_applied
                                                                              else "baseline")
    title = f"Layer {layer}, {head_label(head)}, {query_label(trace, query)} ({stage})"
    return heatmap_image(trace.image, values, title, "attention weight", cmap=cmap, log=log, patch=patch, **options)
