"""View 1: the heatmap shows the planted sink where it is on the image."""

import numpy as np
import pytest

from tests.synthetic_trace import synthetic_trace
from viz.canvas import SELECTION
from viz.colors import value_range
from viz.heatmap import attention_heatmap, blend, heatmap_cell, heatmap_image, upsample
from viz.queries import attention_map


def test_upsample_keeps_non_square_cells_in_place():
    values = np.zeros((3, 5))
    values[1, 3] = 1
    big = upsample(values, (50, 30))
    ys, xs = np.nonzero(big)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (10, 19, 30, 39)


def test_brightest_region_is_the_planted_patch():
    trace = synthetic_trace(grid=(3, 5), sink=(1, 3))
    values = attention_map(trace, 2, None, "all")
    panel = blend(trace.image, values, *value_range(values), short_side=300).astype(int).sum(-1)
    ys, xs = np.nonzero(panel == panel.max())
    height, width = panel.shape
    assert (width, height) == (500, 300)
    assert ys.min() >= height // 3 and ys.max() < 2 * height // 3
    assert xs.min() >= 3 * width // 5 and xs.max() < 4 * width // 5


def test_view_contains_the_blended_panel_and_a_title():
    trace = synthetic_trace()
    values = attention_map(trace, 1, 2, 3)
    expected = blend(trace.image, values, *value_range(values, log=True), log=True)
    out = np.asarray(attention_heatmap(trace, 1, 2, 3, log=True))
    height, width = expected.shape[:2]
    assert np.array_equal(out[-height:, :width], expected)
    assert out.shape[0] > height and out.shape[1] > width + 40  # title above, colour bar to the right
    assert (out[: out.shape[0] - height] < 60).all(-1).any()  # dark title text on the light band


def test_a_click_on_the_heatmap_selects_the_cell_drawn_there():
    image, cells = np.full((60, 100, 3), 128, np.uint8), np.arange(15).reshape(3, 5)
    for cell in (0, 7, 14):
        values = np.zeros((3, 5))
        values.flat[cell] = 1.0
        view = np.asarray(heatmap_image(image, values, "one hot cell")).astype(int)
        yellow = view[:, :560, 0] + view[:, :560, 1] - 2 * view[:, :560, 2]  # left of the colour bar: viridis'
        ys, xs = np.nonzero(yellow == yellow.max())  # top colour over grey (white scores 0)
        point = (int(np.median(xs)), int(np.median(ys)))
        assert heatmap_cell(image.shape, cells, point) == cell
    assert heatmap_cell(image.shape, cells, (10, 5)) is None  # the title band
    assert heatmap_cell(image.shape, cells, (560, 200)) is None  # right of the image: the colour bar


def test_the_selected_patch_is_framed_in_black_and_white_on_exactly_the_cell_a_click_selects():
    trace = synthetic_trace(grid=(3, 5))
    plain = np.asarray(attention_heatmap(trace, 2, None, "answer"))
    for patch in (0, 8, 14):
        marked = np.asarray(attention_heatmap(trace, 2, None, "answer", patch=patch))
        ys, xs = np.nonzero((marked != plain).any(-1))
        top, left = ys.min(), xs.min()
        assert marked.shape == plain.shape and tuple(marked[top, left]) == SELECTION[0]
        assert tuple(marked[(top + ys.max()) // 2, left + 2]) == SELECTION[1]
        assert {tuple(colour) for colour in marked[ys, xs]} == set(SELECTION)
        assert {heatmap_cell(trace.image.shape, trace.cell_map, (x, y)) for y, x in zip(ys, xs)} == {patch}
        assert heatmap_cell(trace.image.shape, trace.cell_map, (left - 1, top - 1)) != patch
        assert heatmap_cell(trace.image.shape, trace.cell_map, (xs.max() + 1, ys.max() + 1)) != patch
    with pytest.raises(ValueError, match="0 … 14"):
        attention_heatmap(trace, 2, patch=15)
