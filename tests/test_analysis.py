"""`analyze`: baseline and VAR runs side by side, and the API summary built from them."""

import dataclasses
import json

import numpy as np
import pytest

from tests.synthetic_trace import partial_trace, synthetic_trace
from var_core.analysis import Analysis, analyze, var_changes
from var_core.config import VARConfig


def test_analysis_runs_both_and_summarises(tiny_bundle, noise_image):
    steps = []
    result = analyze(tiny_bundle, noise_image, "what colour is the square ?", VARConfig(p=0.6, tau=1.2),
                     max_new_tokens=4, on_step=steps.append)
    assert steps == ["baseline", "VAR"]
    assert not result.baseline.var_applied and result.var.var_applied
    assert result.baseline.settings["tau"] == result.var.settings["tau"] == 1.2
    summary = result.summary()
    assert summary["baseline_answer"] == result.baseline.answer and summary["var_answer"] == result.var.answer
    assert len(summary["sinks"]) == tiny_bundle.num_layers
    assert all({"layer", "head", "r"} <= set(head) for head in summary["heads"])


def _changes(layers=4, captured=None, **var_fields):
    """var_changes of a planted synthetic pair: 1 head, sink patch (1, 3) in layers ≥ 1 taking 0.1 of the head's
    visual mass 0.1 + 0.2·layer; VAR (layers 1 … 3, every row selected there) halves it."""
    var = synthetic_trace(layers=layers, heads=1)
    var = dataclasses.replace(var if captured is None else partial_trace(var, captured), **var_fields)
    return var_changes(synthetic_trace(layers=layers, heads=1, var=False), var)


def test_changes_give_sink_mass_of_the_answer_rows_before_and_after_var_per_layer():
    changes = _changes()
    assert changes.answers_identical and changes.layers == [0, 1, 2, 3]
    assert np.allclose(changes.sink_mass_before, [0.0, 0.03, 0.05, 0.07])  # 0.1 of 0.3, 0.5, 0.7; layer 0 has none
    assert np.allclose(changes.sink_mass_after, [0.0, 0.015, 0.025, 0.035])
    assert np.allclose(changes.totals(), (0.0375, 0.01875))


def test_changes_count_rows_and_pairs_var_touched():
    changes = _changes()  # 12 query rows; every row of layers 1 … 3 redistributed
    assert (changes.rows_touched, changes.rows_total) == (36, 48)
    assert changes.pairs_touched == [(1, 0), (2, 0), (3, 0)] and changes.pairs_total == 4


def test_changes_follow_a_partial_capture():
    changes = _changes(captured=[1, 3])
    assert changes.layers == [1, 3] and changes.pairs_touched == [(1, 0), (3, 0)] and changes.rows_total == 24
    assert np.allclose(changes.sink_mass_before, [0.03, 0.07], atol=1e-4)  # float16 attention


def test_changes_compare_answers_and_first_token_top5():
    top = {"top_token_ids": np.array([[7, 3]]), "top_probs": np.array([[0.75, 0.25]], np.float32),
           "top_tokens": [["red", "blue"]]}
    changes = _changes(answer="the square is blue", **top)
    assert not changes.answers_identical
    assert changes.var_top == [("red", 0.75), ("blue", 0.25)] and changes.baseline_top is None  # not recorded


def test_changes_without_captured_answer_rows_are_nan_not_an_error():
    var = synthetic_trace(layers=4, heads=1)
    var = dataclasses.replace(var, query_positions=var.query_positions[:3], attn_to_visual=var.attn_to_visual[:, :, :3],
                              attn_to_visual_raw=var.attn_to_visual_raw[:, :, :3])  # prompt rows only
    changes = var_changes(synthetic_trace(layers=4, heads=1, var=False), var)
    assert np.isnan(changes.sink_mass_before).all() and np.isnan(changes.totals()[0])
    assert changes.summary()["sink_mass_before"] is None and changes.rows_touched == 9


def test_analysis_summary_says_what_var_changed():
    result = Analysis(baseline=synthetic_trace(layers=4, heads=1, var=False), var=synthetic_trace(layers=4, heads=1))
    summary = result.summary()["var_changes"]
    json.dumps(summary, allow_nan=False)  # plain JSON, NaN-free
    assert summary["sink_mass_by_layer"][1] == {"layer": 1, "before": pytest.approx(0.03),
                                                "after": pytest.approx(0.015)}
    assert summary["rows_touched"] == 36 and summary["pairs_touched"] == [[1, 0], [2, 0], [3, 0]]
