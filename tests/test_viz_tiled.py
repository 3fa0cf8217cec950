"""The views on a tiled model's canvas (`var_core.layout`): every token drawn at its cell, gaps left grey, views
edged on the whole canvas, one view drawn alone, a click on a gap selecting nothing."""

import dataclasses

import numpy as np
import pytest

from tests.synthetic_trace import synthetic_trace
from var_core.layout import HOLE, WHOLE
from viz.canvas import title_height
from viz.heatmap import VIEW_EDGE, attention_heatmap, heatmap_cell
from viz.queries import attention_map, attention_values, view_of
from viz.sinks import phi_overlay


def tiled_trace():
    """The synthetic trace's 15 tokens laid out as a tiled model's: a 3 × 3 "tiles" block (tokens 0–8), a gap
    column, a 2 × 3 "global" block (tokens 9–14) with an empty row below it; 10 px per cell."""
    trace = synthetic_trace(grid=(3, 5))
    cells = np.full((3, 7), HOLE)
    cells[:, :3] = np.arange(9).reshape(3, 3)
    cells[:2, 4:] = np.arange(9, 15).reshape(2, 3)
    views = [{"name": WHOLE, "box": [0, 0, 3, 7]}, {"name": "tiles", "box": [0, 0, 3, 3]},
             {"name": "global", "box": [0, 4, 2, 7]}]
    image = np.full((30, 70, 3), 128, np.uint8)
    return dataclasses.replace(trace, grid=(3, 7), cells=cells, views=views, image=image)


def test_values_are_drawn_at_their_cells_and_gaps_are_empty():
    trace = tiled_trace()
    values, laid = attention_values(trace, 2), attention_map(trace, 2)
    assert laid.shape == (3, 7) and laid[1, 5] == values[13] and laid[2, 2] == values[8]
    assert np.isnan(laid[:, 3]).all() and np.isnan(laid[2, 4:]).all()
    image, cells = view_of(trace, "global")
    assert image.shape == (20, 30, 3) and cells.tolist() == [[9, 10, 11], [12, 13, 14]]
    with pytest.raises(ValueError, match="'tile 9' does not exist"):
        view_of(trace, "tile 9")


def test_the_whole_canvas_edges_its_views_and_leaves_gaps_grey():
    trace = tiled_trace()
    whole = np.asarray(attention_heatmap(trace, 2, short_side=90))
    top = title_height()
    gap = whole[top + 45, int(3.5 * 210 / 7)]  # the gap column's centre (the panel is 210 × 90)
    assert np.ptp(gap) == 0  # grey: no colour where no token is
    edge = whole[top + 45, 3 * 210 // 7 - 1]  # the right edge of the "tiles" box
    assert tuple(edge) == VIEW_EDGE
    alone = np.asarray(attention_heatmap(trace, 2, view="tiles", short_side=90))
    assert VIEW_EDGE not in {tuple(p) for p in alone[top + 45, :90]}  # one view alone: no edges drawn
    phi = np.asarray(phi_overlay(trace, 2, short_side=90))
    assert tuple(phi[top + 45, 3 * 210 // 7 - 1]) == VIEW_EDGE


def test_a_click_maps_through_the_views_cells():
    trace = tiled_trace()
    top = title_height()
    image, cells = view_of(trace)
    assert heatmap_cell(image.shape, cells, (5 * 30 + 15, top + 45), 90) == 13  # whole canvas, cell (1, 5)
    assert heatmap_cell(image.shape, cells, (3 * 30 + 15, top + 45), 90) is None  # the gap
    image, cells = view_of(trace, "global")
    assert heatmap_cell(image.shape, cells, (5, top + 5), 90) == 9
