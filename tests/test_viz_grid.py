"""View 2: the layer×head mosaic frames exactly the selected heads and shows each head's peak in place."""

import numpy as np
import pytest

from tests.pixels import assert_selection_marked, find
from tests.synthetic_trace import partial_trace, synthetic_trace
from viz.canvas import BACKGROUND
from viz.colors import OUTLINE
from viz.grid import head_grid, mosaic, tile_shape
from viz.queries import head_maps, selected_heads

TILE, GAP = 48, 5


def _tile_origin(layer, head, shape):
    tile_h, tile_w = shape
    return layer * (tile_h + GAP) + GAP // 2, head * (tile_w + GAP) + GAP // 2


def test_tiles_keep_the_grid_aspect():
    assert tile_shape((3, 5), TILE) == (27, 45)
    assert tile_shape((24, 24), TILE) == (48, 48)


def test_framed_tiles_are_exactly_the_selected_heads():
    trace = synthetic_trace(layers=5, heads=4)
    outlined = selected_heads(trace)
    assert 0 < outlined.sum() < outlined.size
    image = np.asarray(mosaic(head_maps(trace), outlined, TILE, GAP))
    shape = tile_shape(trace.grid, TILE)
    for layer in range(5):
        for head in range(4):
            y, x = _tile_origin(layer, head, shape)
            above = tuple(image[y - 1, x + shape[1] // 2])
            assert above == (OUTLINE if outlined[layer, head] else BACKGROUND)


def test_each_tile_peaks_at_its_planted_patch():
    trace = synthetic_trace(layers=3, heads=3, grid=(3, 5), sink=(2, 4))
    maps = head_maps(trace)
    peak = maps.max(axis=(2, 3), keepdims=True)
    image = np.asarray(mosaic(maps / peak, np.zeros((3, 3), bool), TILE, GAP)).astype(int).sum(-1)
    shape = tile_shape(trace.grid, TILE)
    per_patch = shape[0] // 3
    for layer in range(3):
        for head in range(3):
            y, x = _tile_origin(layer, head, shape)
            tile = image[y:y + shape[0], x:x + shape[1]]
            row, col = np.unravel_index(tile.argmax(), tile.shape)
            expected = (0, 0) if layer == 0 or head == 0 else (2, 4)
            assert (row // per_patch, col // per_patch) == expected


def test_labelled_grid_keeps_all_frames_and_one_scale_option():
    trace = synthetic_trace(layers=5, heads=4)
    outlined = selected_heads(trace, "answer")
    bare = np.asarray(mosaic(head_maps(trace, "answer"), outlined, TILE, GAP))
    full = np.asarray(head_grid(trace, "answer", tile=TILE))
    count = lambda image: int((image == OUTLINE).all(-1).sum())  # noqa: E731
    assert count(full) == count(bare) > 0
    assert full.shape[0] > bare.shape[0] and full.shape[1] > bare.shape[1]
    assert np.asarray(head_grid(trace, scale="shared", log=True)).shape[0] == full.shape[0]
    with pytest.raises(ValueError, match="scale"):
        head_grid(trace, scale="global")



@pytest.mark.parametrize("captured, row", [(None, 3), ([1, 3], 1)])
def test_the_current_layer_is_marked_and_with_a_head_its_tile_framed(captured, row):
    trace = synthetic_trace(layers=5, heads=4)
    trace = trace if captured is None else partial_trace(trace, captured)
    maps = head_maps(trace, "answer")
    outlined = selected_heads(trace, "answer")
    body = np.asarray(mosaic(maps / maps.max(axis=(2, 3), keepdims=True), outlined, TILE, GAP))
    plain = np.asarray(head_grid(trace, "answer", tile=TILE))
    at, shape = find(plain, body), tile_shape(trace.grid, TILE)
    assert_selection_marked(plain, np.asarray(head_grid(trace, "answer", tile=TILE, layer=3)), at, shape, GAP, row)
    marked = np.asarray(head_grid(trace, "answer", tile=TILE, layer=3, head=0))
    assert_selection_marked(plain, marked, at, shape, GAP, row, 0)
    assert (marked == OUTLINE).all(-1).sum() == (plain == OUTLINE).all(-1).sum()  # vermillion frames all kept
