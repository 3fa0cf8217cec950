"""View 5: before/after VAR on one colour scale, with the difference."""

import numpy as np
import pytest

from tests.synthetic_trace import synthetic_trace
from viz.compare import before_after, compare_maps
from viz.heatmap import blend


def _panels(image, short_side):
    height, width = blend(np.zeros((30, 50, 3), np.uint8), np.zeros((3, 5)), 0, 1, short_side=short_side).shape[:2]
    out = np.asarray(image)
    return out[-height:, :width], out[-height:, width + 8:2 * width + 8], (height, width)


def test_equal_values_get_equal_colours_in_both_panels():
    image = np.full((30, 50, 3), 128, np.uint8)
    before = np.full((3, 5), 0.01)
    before[0, 0], before[1, 3] = 0.5, 0.3
    after = before.copy()
    after[1, 3] = 0.05  # sink lost attention
    after[2, 2] = 0.6  # another patch gained it, above the "before" maximum
    left, right, (height, width) = _panels(compare_maps(image, before, after, "t", short_side=150), 150)
    cell = lambda panel, r, c: panel[r * height // 3 + 5, c * width // 5 + 5]  # noqa: E731
    assert (cell(left, 0, 0) == cell(right, 0, 0)).all()
    assert cell(right, 2, 2).sum() > cell(left, 0, 0).sum()  # one scale: 0.6 after is brighter than 0.5 before
    assert not (cell(left, 1, 3) == cell(right, 1, 3)).all()


def test_trace_view_and_baseline_refusal():
    trace = synthetic_trace()
    assert before_after(trace, 2, 1, "answer").width > 3 * 288
    with pytest.raises(ValueError, match="baseline"):
        before_after(synthetic_trace(var=False), 2)


def test_difference_panel_is_red_where_attention_grew_and_blue_where_it_fell():
    image = np.full((30, 50, 3), 255, np.uint8)
    before = np.zeros((3, 5))
    before[0, 0] = 1.0
    after = np.zeros((3, 5))
    after[2, 4] = 1.0
    out = np.asarray(compare_maps(image, before, after, "t", short_side=150)).astype(int)
    diff = out[-150:, -320:-95]  # inside the difference panel, left of its colour bar
    red_y, red_x = np.nonzero(diff[..., 0] - diff[..., 2] > 50)
    blue_y, blue_x = np.nonzero(diff[..., 2] - diff[..., 0] > 50)
    assert red_y.min() >= 100 and blue_y.max() < 50  # gained cell in the bottom row, lost cell in the top row
    assert red_x.mean() > blue_x.mean()

def test_unchanged_head_has_a_neutral_difference_panel():
    trace = synthetic_trace()
    assert not trace.selected[2, 1].any()  # VAR leaves this head alone, so before == after
    out = np.asarray(before_after(trace, 2, 1, "answer", short_side=150)).astype(int)
    diff = out[-150:, -350:-120]  # inside the difference panel (its colour bar is ~100 px wide here)
    assert (np.abs(diff[..., 0] - diff[..., 2]) < 30).all()
