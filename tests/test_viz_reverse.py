"""Reverse view: from a patch back to the text tokens, and to the layers and heads that attend to it."""

import numpy as np
import pytest

from tests.pixels import assert_selection_marked, find
from tests.synthetic_trace import synthetic_trace
from viz.canvas import BACKGROUND
from viz.colors import OUTLINE, value_range
from viz.grid import mosaic
from viz.reverse import CELL, GAP, patch_layer_head, patch_scores, tokens_attending
from viz.tokens import strip_rows

SINK, ORDINARY = 1 * 5 + 3, 2 * 5 + 0  # planted sink cell (1, 3) of the 3×5 grid, and a plain cell


def test_sink_patch_draws_more_attention_than_an_ordinary_patch_from_every_token():
    trace = synthetic_trace()
    assert (patch_scores(trace, SINK) > patch_scores(trace, ORDINARY)).all()
    assert (patch_scores(trace, SINK, layer=2, head=1) > 5 * patch_scores(trace, ORDINARY, layer=2, head=1)).all()
    assert (patch_scores(trace, SINK, layer=0) < patch_scores(trace, 0, layer=0)).all()  # layer 0: no sink, (0, 0)


def test_a_score_is_that_rows_attention_to_the_patch_over_the_largest():
    trace = synthetic_trace(seed=3)
    strip, rows = tokens_attending(trace, ORDINARY, layer=2, head=0), strip_rows(trace)
    column = trace.attn_to_visual[2, 0, :, ORDINARY]  # head 0 is image-centric: VAR changed it
    for (text, score), row in zip(strip, rows):
        if row is not None:
            assert text.strip() == trace.query_tokens[row]
            assert score == pytest.approx(column[row] / column.max(), abs=1e-4)
    mean = trace.attn_to_visual[:, :, 4, ORDINARY].mean() / trace.attn_to_visual[..., ORDINARY].mean((0, 1)).max()
    assert tokens_attending(trace, ORDINARY)[rows.index(4)][1] == pytest.approx(mean, abs=1e-4)


def test_tokens_without_a_captured_row_get_none_and_zero_attention_gives_zeros():
    trace = synthetic_trace()
    strip = tokens_attending(trace, SINK)
    assert [score is None for _, score in strip] == [row is None for row in strip_rows(trace)]
    assert strip[:4] == [("<s> ", None), ("USER ", None), (": ", None), ("[image: 15 tokens] ", None)]
    assert strip[-1] == ("</s> ", None)
    assert max(score for _, score in strip if score is not None) == 1.0
    trace.attn_to_visual[..., SINK] = 0.0
    assert {score for _, score in tokens_attending(trace, SINK) if score is not None} == {0.0}


def test_bad_patch_layer_or_head_is_refused_with_the_valid_range():
    trace = synthetic_trace()
    for patch in (-1, 15, 2.0, True):
        with pytest.raises(ValueError, match="0 … 14"):
            tokens_attending(trace, patch)
    with pytest.raises(ValueError, match="layers 0 … 3"):
        tokens_attending(trace, 0, layer=4)
    with pytest.raises(ValueError, match="heads 0 … 2"):
        tokens_attending(trace, 0, head=3)
    with pytest.raises(ValueError, match="0 … 14"):
        patch_layer_head(trace, 15)


def test_tile_colours_each_layer_head_and_frames_the_image_centric_heads():
    trace = synthetic_trace(layers=5, heads=4)
    values = trace.attn_to_visual[..., SINK].mean(2)
    outlined = trace.selected.any(-1)
    assert 0 < outlined.sum() < outlined.size
    body = np.asarray(mosaic(values[:, :, None, None], outlined, CELL, GAP, "viridis", *value_range(values, 0.0)))
    image = np.asarray(patch_layer_head(trace, SINK))
    top, left = find(image, body)
    for layer in range(5):
        for head in range(4):
            y, x = top + layer * (CELL + GAP) + GAP // 2, left + head * (CELL + GAP) + GAP // 2
            assert tuple(image[y - 1, x + CELL // 2]) == (OUTLINE if outlined[layer, head] else BACKGROUND)


def test_row_marks_say_where_the_patch_or_another_visual_token_is_a_sink():
    trace = synthetic_trace(layers=4)
    assert not trace.visual_sinks[0].any() and trace.visual_sinks[1:, SINK].all()  # planted: sink from layer 1 on
    for patch, filled in ((SINK, True), (ORDINARY, False)):
        values = trace.attn_to_visual[..., patch].mean(2)
        body = np.asarray(mosaic(values[:, :, None, None], trace.selected.any(-1), CELL, GAP, "viridis",
                                 *value_range(values, 0.0)))
        image = np.asarray(patch_layer_head(trace, patch))
        top, left = find(image, body)
        x = left + body.shape[1] + (CELL + GAP) // 2
        for layer in range(4):
            y = top + layer * (CELL + GAP) + (CELL + GAP) // 2
            mark = image[y - CELL // 2:y + CELL // 2, x - CELL // 2:x + CELL // 2]
            assert (mark == OUTLINE).all(-1).any() == (layer > 0)
            assert (tuple(image[y, x]) == OUTLINE) == (filled and layer > 0)


def test_the_current_layer_is_marked_and_with_a_head_its_cell_framed():
    trace = synthetic_trace(layers=5, heads=4)
    values = trace.attn_to_visual[..., SINK].mean(2)
    body = np.asarray(mosaic(values[:, :, None, None], trace.selected.any(-1), CELL, GAP, "viridis",
                             *value_range(values, 0.0)))
    plain = np.asarray(patch_layer_head(trace, SINK))
    at = find(plain, body)
    assert_selection_marked(plain, np.asarray(patch_layer_head(trace, SINK, layer=2)), at, (CELL, CELL), GAP, 2)
    assert_selection_marked(plain, np.asarray(patch_layer_head(trace, SINK, layer=2, head=1)), at, (CELL, CELL), GAP,
                            2, 1)
    with pytest.raises(ValueError, match="heads 0 … 3"):
        patch_layer_head(trace, SINK, layer=2, head=4)
