"""Finding a rendered part inside a composed view, and the selection marks on it, pixel for pixel (view tests)."""

import numpy as np

from viz.canvas import BACKGROUND, SELECTION


def find(image: np.ndarray, part: np.ndarray) -> tuple[int, int]:
    """(y, x) of the top-left corner where `part` appears exactly in `image`."""
    ay, ax = np.argwhere((part != BACKGROUND).any(-1))[0]
    for y, x in np.argwhere((image == part[ay, ax]).all(-1)) - (ay, ax):
        if (image[y:y + part.shape[0], x:x + part.shape[1]] == part).all():
            return int(y), int(x)
    raise AssertionError("part not found in image")


def assert_selection_marked(plain: np.ndarray, marked: np.ndarray, body_at: tuple[int, int], tile: tuple[int, int],
                            gap: int, row: int, head: int | None = None) -> None:
    """`marked` differs from `plain` only in row `row`'s label, left of the mosaic at `body_at` (y, x), now on black,
    and (with `head`) in tile (`row`, `head`), framed black outside, white inside."""
    (top, left), (tile_h, tile_w) = body_at, tile
    ys, xs = np.nonzero((marked != plain).any(-1))
    label = xs < left
    band = top + row * (tile_h + gap), top + (row + 1) * (tile_h + gap)
    assert label.any() and band[0] <= ys[label].min() and ys[label].max() < band[1]
    assert (marked[band[0]:band[1], :left] == SELECTION[0]).all(-1).sum() > 30
    if head is None:
        assert label.all()
        return
    y, x = band[0] + gap // 2, left + head * (tile_w + gap) + gap // 2
    assert (ys[~label].min(), ys[~label].max(), xs[~label].min(), xs[~label].max()) == (y, y + tile_h - 1, x,
                                                                                          x + tile_w - 1)
    assert tuple(marked[y, x]) == SELECTION[0] and tuple(marked[y + tile_h // 2, x + 2]) == SELECTION[1]
