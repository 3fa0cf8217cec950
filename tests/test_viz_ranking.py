"""View 4: ranking order, selected heads highlighted, top-k table."""

import matplotlib.colors as mcolors
import numpy as np

from tests.synthetic_trace import synthetic_trace
from viz.figures import SELECTED
from viz.ranking import TABLE_HEADERS, head_ranking, ranked_heads, top_heads_table


def test_order_puts_looking_heads_first_then_r_then_mass():
    order = [(row["layer"], row["head"]) for row in ranked_heads(synthetic_trace(layers=4, heads=3))]
    assert order[:6] == [(0, 2), (3, 0), (2, 0), (1, 0), (3, 2), (3, 1)]
    assert order[-2:] == [(0, 1), (0, 0)]


def test_selected_flags_match_the_trace():
    trace = synthetic_trace()
    for row in ranked_heads(trace, "answer"):
        assert row["selected"] == trace.selected[row["layer"], row["head"]].any()


def test_table_rows():
    table = top_heads_table(synthetic_trace(), k=2)
    assert len(table[0]) == len(TABLE_HEADERS)
    assert table == [[1, 0, 2, 1.0, 0.233, "yes"], [2, 3, 0, 0.9, 0.7, "yes"]]


def test_chart_highlights_selected_bars_in_rank_order():
    trace = synthetic_trace()
    figure = head_ranking(trace, top=8)
    colours = figure.axes[0].collections[0].get_facecolors()
    highlighted = [np.allclose(colour, mcolors.to_rgba(SELECTED)) for colour in colours]
    assert highlighted == [row["selected"] for row in ranked_heads(trace)[:8]]
    labels = [text.get_text() for text in figure.axes[0].texts if text.get_text().startswith("L")]
    assert labels[:3] == ["L0H2", "L3H0", "L2H0"]
    masses = figure.axes[0].lines[0].get_ydata()
    assert np.allclose(masses, [row["visual_mass"] for row in ranked_heads(trace)[:8]])
