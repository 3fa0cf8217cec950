"""var_core.layout: the canvas of token cells, by hand — blocks in place, holes, views, values laid on cells."""

import numpy as np
import pytest

from var_core.layout import (HOLE, SEPARATOR_COLOUR, WHOLE, Block, cell_of, check_every_token_once, compose,
                             on_cells, raster, single_view, tile_grid, view_box)


def solid(height: int, width: int, value: int) -> np.ndarray:
    return np.full((height, width, 3), value, dtype=np.uint8)


def test_raster_counts_and_orders_tokens():
    assert raster(6, 2, 3, start=10).tolist() == [[10, 11, 12], [13, 14, 15]]
    with pytest.raises(ValueError, match="2×4"):
        raster(6, 2, 4)


def test_single_view_is_the_image_in_raster_order():
    image = solid(8, 12, 7)
    layout = single_view(image, 2, 3)
    assert layout.image is image and layout.cells.tolist() == [[0, 1, 2], [3, 4, 5]]
    assert layout.views == [{"name": WHOLE, "box": [0, 0, 2, 3]}]


def test_compose_puts_tiles_in_place_a_global_view_beside_them_and_a_separator_column():
    tiles = np.stack([solid(4, 4, 10 * (i + 1)) for i in range(2)])  # two 4-px tiles, 2 × 2 tokens each
    blocks = tile_grid(tiles, 1, 2, (2, 2))  # tokens 0–3 and 4–7
    blocks += [Block(np.array([[8], [9]]), None, 0, 4),  # one token per row with no place on the image
               Block(raster(4, 2, 2, 10), solid(6, 6, 200), 0, 6, "global")]
    layout = compose(blocks, groups={"all tiles": ["tile 1,1", "tile 1,2"]})
    assert layout.cells.tolist() == [[0, 1, 4, 5, 8, HOLE, 10, 11], [2, 3, 6, 7, 9, HOLE, 12, 13]]
    pitch = 2  # the first block's 4 px over 2 cells
    assert layout.image.shape == (2 * pitch, 8 * pitch, 3)
    assert (layout.image[:, :2 * pitch] == 10).all() and (layout.image[:, 2 * pitch:4 * pitch] == 20).all()
    assert (layout.image[:, 4 * pitch:5 * pitch] == SEPARATOR_COLOUR).all()
    assert (layout.image[:, 5 * pitch:6 * pitch] == 255).all() and (layout.image[:, 6 * pitch:] == 200).all()
    views = {view["name"]: view["box"] for view in layout.views}
    assert views == {WHOLE: [0, 0, 2, 8], "tile 1,1": [0, 0, 2, 2], "tile 1,2": [0, 2, 2, 4], "global": [0, 6, 2, 8],
                     "all tiles": [0, 0, 2, 4]}
    check_every_token_once(layout.cells, 14)


def test_compose_refuses_blocks_that_overlap():
    with pytest.raises(ValueError, match="same canvas cell"):
        compose([Block(raster(4, 2, 2), solid(2, 2, 0)), Block(raster(4, 2, 2, 4), solid(2, 2, 0), 1, 1)])


def test_every_token_must_be_drawn_exactly_once():
    check_every_token_once(np.array([[0, HOLE], [1, 2]]), 3)
    with pytest.raises(ValueError, match="2 distinct of 3"):
        check_every_token_once(np.array([[0, 1], [1, HOLE]]), 3)
    with pytest.raises(ValueError, match="exactly once"):
        check_every_token_once(np.array([[0, 1]]), 3)


def test_values_land_on_their_cells_with_holes_empty():
    cells = np.array([[2, HOLE], [0, 1]])
    laid = on_cells(np.array([[10.0, 11.0, 12.0]]), cells)  # leading axes kept
    assert laid.shape == (1, 2, 2) and laid[0, 0, 0] == 12 and laid[0, 1].tolist() == [10, 11]
    assert np.isnan(laid[0, 0, 1])
    assert on_cells(np.array([True, True, True]), cells).tolist() == [[True, False], [True, True]]
    with pytest.raises(ValueError, match="do not cover"):
        on_cells(np.zeros(2), cells)


def test_cells_and_views_are_found_by_name():
    cells = np.array([[2, HOLE], [0, 1]])
    assert cell_of(cells, 1) == (1, 1) and cell_of(cells, 5) is None
    views = [{"name": WHOLE, "box": [0, 0, 2, 2]}, {"name": "global", "box": [0, 1, 1, 2]}]
    assert view_box(views, None) == [0, 0, 2, 2] and view_box(views, "global") == [0, 1, 1, 2]
    with pytest.raises(ValueError, match="'tile 9' does not exist"):
        view_box(views, "tile 9")
