"""Explanation maps side by side: runs as rows, methods as columns, each map on its own scale in place."""

import numpy as np
import pytest
from PIL import Image

from tests.pixels import find
from viz.explain import GAP, compare_methods
from viz.heatmap import blend
from viz.sinks import frame_cells

IMAGE = (np.random.default_rng(0).random((30, 50, 3)) * 255).astype(np.uint8)
SHORT = 90


def one_hot(row: int, col: int, value: float = 1.0, grid=(3, 5)) -> np.ndarray:
    values = np.zeros(grid, np.float32)
    values[row, col] = value
    return values


def test_each_cell_is_its_map_on_its_own_scale_and_peaks_in_place():
    maps = {"baseline": {"raw attention": one_hot(1, 3, 0.9), "relevancy": one_hot(0, 0, 0.02)},
            "VAR": {"raw attention": one_hot(2, 1, 0.4), "relevancy": one_hot(2, 4, 0.001)}}
    out = np.asarray(compare_methods(IMAGE, maps, "t", short_side=SHORT)).astype(int)
    where = {}
    for run, by_method in maps.items():
        for method, values in by_method.items():
            cell = blend(IMAGE, values / values.max(), 0.0, 1.0, short_side=SHORT)  # own max → the peak is yellow
            y, x = where[run, method] = find(out, cell)
            height, width = cell.shape[:2]
            brightness = out[y:y + height, x:x + width].sum(-1)
            row, col = np.unravel_index(brightness.argmax(), brightness.shape)
            assert (row * 3 // height, col * 5 // width) == np.unravel_index(values.argmax(), values.shape)
    assert where["baseline", "raw attention"][0] == where["baseline", "relevancy"][0] < where["VAR", "relevancy"][0]
    assert where["baseline", "raw attention"][1] == where["VAR", "raw attention"][1] < where["VAR", "relevancy"][1]


def test_size_grows_with_runs_and_methods_by_whole_cells():
    two = {name: one_hot(0, 0) for name in ("raw attention", "relevancy")}
    four = {**two, "relative attention": one_hot(0, 0), "activation map": one_hot(0, 0)}
    size = lambda maps: compare_methods(IMAGE, maps, "t", short_side=200).size  # noqa: E731
    (w12, h12), (w14, h14), (w24, h24) = size({"a": two}), size({"a": four}), size({"a": four, "b": four})
    assert w14 - w12 == 2 * (333 + GAP) and h14 == h12  # a 200 px-high panel of the 50×30 image is 333 px wide
    assert w24 == w14 and h24 - h14 > 200


def test_all_zero_map_draws_without_dividing_by_zero():
    blank = compare_methods(IMAGE, {"a": {"m": np.zeros((3, 5))}}, "t", short_side=SHORT)
    cell = blend(IMAGE, np.zeros((3, 5)), 0.0, 1.0, short_side=SHORT)
    find(np.asarray(blank), cell)


@pytest.mark.parametrize("maps, message", [
    ({}, "at least one run"),
    ({"a": {}}, "at least one run"),
    ({"a": {"m": one_hot(0, 0)}, "b": {"n": one_hot(0, 0)}}, "same ones"),
    ({"a": {"m": one_hot(0, 0)}, "b": {"m": one_hot(0, 0), "n": one_hot(0, 0)}}, "same ones"),
    ({"a": {"m": one_hot(0, 0), "n": one_hot(0, 0)}, "b": {"m": one_hot(0, 0)}}, "same ones"),
    ({"a": {"m": one_hot(0, 0), "n": one_hot(0, 0, grid=(4, 4))}}, r"shape \(4, 4\)"),
    ({"a": {"m": np.ones(15)}}, "2-D"),
])
def test_inconsistent_maps_are_refused(maps, message):
    with pytest.raises(ValueError, match=message):
        compare_methods(IMAGE, maps, "t")


def test_sink_patches_are_framed_in_the_cells_of_their_run_only():
    maps = {"baseline": {"raw attention": one_hot(0, 0)}, "VAR": {"raw attention": one_hot(0, 0)}}
    sinks = np.zeros((3, 5), bool)
    sinks[2, 4] = True
    out = np.asarray(compare_methods(IMAGE, maps, "t", short_side=SHORT, sinks={"VAR": sinks}))
    cell = blend(IMAGE, one_hot(0, 0), 0.0, 1.0, short_side=SHORT)
    framed = np.asarray(frame_cells(Image.fromarray(cell), sinks, (3, 5), width=2))
    assert not np.array_equal(framed, cell)
    assert find(out, framed)[0] > find(out, cell)[0]  # the VAR row is framed, the baseline row is not
    with pytest.raises(ValueError, match="sinks"):
        compare_methods(IMAGE, maps, "t", sinks={"other": sinks})
