"""What VAR changed: the before → after figure and the Markdown lines carry the planted numbers."""

import dataclasses

import numpy as np

from tests.synthetic_trace import synthetic_trace
from var_core.analysis import var_changes
from viz.changes import var_changes_figure, var_changes_markdown
from viz.figures import figure_image

TOP = {"top_token_ids": np.array([[7, 3, 9, 1, 2]]), "top_probs": np.array([[0.6, 0.2, 0.1, 0.05, 3e-5]], np.float32),
       "top_tokens": [[" red", "blue", "a|b", "\n", "`x`"]]}


def _changes(**var_fields):
    """1 head, sink mass 0, 0.03, 0.05, 0.07 before VAR and half that after (see tests/test_analysis.py)."""
    var = dataclasses.replace(synthetic_trace(layers=4, heads=1), **var_fields)
    return var_changes(dataclasses.replace(synthetic_trace(layers=4, heads=1, var=False), **TOP), var)


def test_figure_draws_sink_mass_before_and_after_per_layer_at_phone_width():
    figure = var_changes_figure(_changes())
    before, after = figure.axes[0].lines
    assert list(before.get_xdata()) == [0, 1, 2, 3]
    assert np.allclose(before.get_ydata(), [0, 0.03, 0.05, 0.07])
    assert np.allclose(after.get_ydata(), [0, 0.015, 0.025, 0.035])
    assert figure_image(figure).size == (390, 300)
    assert figure.texts[0].get_text() == "Attention on visual sinks\nanswer tokens, mean over heads, layers 0–3"


def test_markdown_says_identical_answers_totals_and_touched_rows():
    text = var_changes_markdown(_changes())
    assert text.startswith("**VAR did not change the answer.**\n\n")
    assert "layers 0–3): **0.038 → 0.019** (-50%)." in text  # 0.0375 and 0.01875: means of the planted masses
    assert "**36** of 48 (layer, head, query) rows, **3** of 4 (layer, head) pairs." in text
    assert "First-token probabilities were not recorded" in text  # the VAR trace has no top-5


def test_markdown_lists_top5_with_and_without_var_with_tokens_escaped():
    text = var_changes_markdown(_changes(answer="the square is blue", **TOP))
    assert text.startswith("**VAR changed the answer.**")
    assert "First answer token: `' red'` p = 0.600 without VAR, `' red'` p = 0.600 with VAR." in text
    table = text.split("\n\n")[-1].split("\n")
    assert table[:2] == ["| | without VAR | with VAR |", "|---|---|---|"] and len(table) == 7
    assert table[4] == "| 3 | `'a\\|b'` 0.100 | `'a\\|b'` 0.100 |" and table[5].startswith("| 4 | `'↵'` 0.050")
    assert table[6].startswith("| 5 | `'ˋxˋ'` 3.0e-05 |")  # not 0.000
