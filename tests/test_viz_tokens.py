"""View 7: token strip data for gr.HighlightedText."""

import numpy as np
import pytest

from tests.synthetic_trace import synthetic_trace
from viz.tokens import strip_rows, strip_scores, token_strip


def test_image_collapses_and_text_before_it_has_no_score():
    strip = token_strip(synthetic_trace(grid=(3, 5)))
    assert strip[:4] == [("<s> ", None), ("USER ", None), (": ", None), ("[image: 15 tokens] ", None)]
    assert strip[-1] == ("</s> ", None)  # the last generated token is never fed back
    assert all(score is not None for _, score in strip[4:-1])


def test_scores_are_each_rows_visual_mass_and_clicks_map_to_rows():
    trace = synthetic_trace()
    trace.visual_mass = trace.visual_mass * np.linspace(0.1, 1.0, len(trace.query_positions))
    strip, rows = token_strip(trace, layer=3, head=1), strip_rows(trace)
    for (text, score), row in zip(strip, rows):
        if row is not None:
            assert text.strip() == trace.query_tokens[row]
            assert np.isclose(score, trace.visual_mass[3, 1, row], atol=1e-4)
    assert np.allclose(strip_scores(trace), trace.visual_mass.mean((0, 1)))
    assert max(score for _, score in token_strip(trace, relative=True) if score is not None) == 1.0


def test_the_selected_query_token_is_marked_and_clicks_still_map_to_rows():
    trace = synthetic_trace()
    plain, rows = token_strip(trace, 2, 1, relative=True), strip_rows(trace)
    for query, row in ((3, 3), (-1, len(trace.query_positions) - 1)):
        strip = token_strip(trace, 2, 1, relative=True, query=query)
        changed = [index for index, (old, new) in enumerate(zip(plain, strip)) if old != new]
        assert len(strip) == len(rows) and changed == [rows.index(row)]
        assert strip[changed[0]] == (f"▸{trace.query_tokens[row]}◂ ", plain[changed[0]][1])
    assert token_strip(trace, 2, 1, relative=True, query="answer") == plain
    with pytest.raises(ValueError, match="out of range"):
        token_strip(trace, query=len(trace.query_positions))
