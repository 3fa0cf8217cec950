"""View 4: ranking order (the heads VAR acts on first), why every other head is left, selected bars highlighted,
top-k table, one count in every title."""

import dataclasses

import matplotlib.colors as mcolors
import numpy as np

from tests.synthetic_trace import partial_trace, synthetic_trace
from viz.figures import SELECTED
from viz.queries import var_heads, var_layers
from viz.ranking import TABLE_HEADERS, head_ranking, head_status, ranked_heads, selection_summary, top_heads_table


def _with_settings(trace, **settings):
    """`trace` with some settings replaced."""
    return dataclasses.replace(trace, settings={**trace.settings, **settings})


def test_heads_var_acts_on_come_first_and_untouched_layers_last():
    # layer 0 has no visual sink and is outside the VAR layers 1–3: its r = 1 heads (L0H2 is even planted as
    # "selected" by the r/mass rule) used to top the ranking; VAR never touches them
    order = [(row["layer"], row["head"]) for row in ranked_heads(synthetic_trace(layers=4, heads=3))]
    assert order[:3] == [(3, 0), (2, 0), (1, 0)]  # image-centric, r = 0.9, by visual mass
    assert order[3:9] == [(3, 2), (3, 1), (2, 2), (2, 1), (1, 2), (1, 1)]  # r = 0.2 < ρ, by visual mass
    assert order[-3:] == [(0, 2), (0, 1), (0, 0)]


def test_selected_means_var_acts_on_the_head():
    trace = synthetic_trace()
    for row in ranked_heads(trace, "answer"):
        assert row["selected"] == (trace.selected[row["layer"], row["head"]].any() and row["layer"] in (1, 2, 3))
    assert var_heads(trace).sum() == 3 and trace.selected.any(-1).sum() == 4  # L0H2 passes the rule, VAR skips it


def test_every_other_head_says_why_var_leaves_it():
    status = head_status(synthetic_trace())
    assert list(status[:, 0]) == ["no: layer outside VAR (1–3)", "yes", "yes", "yes"]
    assert set(status[1:, 1:].ravel()) == {"no: r < ρ = 0.5"}
    status = head_status(_with_settings(synthetic_trace(), var_layers=[0, 1, 2, 3], min_visual_mass=0.5))
    assert status[0, 2] == "no: no visual sink in layer" and status[1, 1] == "no: visual mass < 0.5"


def test_a_baseline_ranks_within_the_default_var_layers():
    baseline = _with_settings(synthetic_trace(layers=5, var=False), var_layers=[])
    assert var_layers(baseline) == [2, 3]
    assert {row["layer"] for row in ranked_heads(baseline) if row["selected"]} == {2, 3}


def test_table_rows():
    table = top_heads_table(synthetic_trace(), k=2)
    assert len(table[0]) == len(TABLE_HEADERS)
    assert table == [[1, 3, 0, 0.9, 0.7, "yes"], [2, 2, 0, 0.9, 0.5, "yes"]]


def test_chart_highlights_selected_bars_in_rank_order():
    trace = synthetic_trace()
    figure = head_ranking(trace, top=8)
    colours = figure.axes[0].collections[0].get_facecolors()
    highlighted = [np.allclose(colour, mcolors.to_rgba(SELECTED)) for colour in colours]
    assert highlighted == [row["selected"] for row in ranked_heads(trace)[:8]] == [True] * 3 + [False] * 5
    labels = [text.get_text() for text in figure.axes[0].texts if text.get_text().startswith("L")]
    assert labels[:4] == ["L3H0", "L2H0", "L1H0", "L3H2"]
    masses = figure.axes[0].lines[0].get_ydata()
    assert np.allclose(masses, [row["visual_mass"] for row in ranked_heads(trace)[:8]])


def test_titles_state_one_count():
    trace = partial_trace(synthetic_trace(layers=4), [0, 2, 3])
    summary = selection_summary(trace)
    assert summary == "2 image-centric (layer, head) pairs VAR acts on: layers 2–3 (VAR layers 1–3 with a visual sink)"
    title = head_ranking(trace).texts[0].get_text()
    assert "(top 9 of 9) (captured layers: 0, 2, 3)" in title and summary.replace(": layers", ":\nlayers") in title
