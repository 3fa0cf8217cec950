"""LUT colouring: perceptual colormaps, linear and log scales."""

import numpy as np

from viz.colors import colorize, lut, normalize, value_range


def test_lut_matches_matplotlib_endpoints():
    table = lut("viridis")
    assert table.shape == (256, 3)
    assert tuple(table[0]) == (68, 1, 84) and tuple(table[-1]) == (253, 231, 37)


def test_log_scale_spreads_small_values():
    values = np.array([1e-3, 1e-2, 1.0])
    assert normalize(values, 1e-3, 1.0)[1] < 0.01
    assert np.allclose(normalize(values, 1e-3, 1.0, log=True), [0.0, 1 / 3, 1.0])


def test_log_range_is_positive_even_with_zeros():
    low, high = value_range(np.array([0.0, 0.5]), log=True)
    assert 0 < low < high == 0.5


def test_colorize_clips_and_maps_ends():
    colours = colorize(np.array([-1.0, 0.0, 1.0, 2.0]), 0.0, 1.0, "inferno")
    assert (colours[0] == colours[1]).all() and (colours[2] == colours[3]).all()
    assert (colours[0] == lut("inferno")[0]).all()
