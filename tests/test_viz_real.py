"""Every view runs on real Traces from the tiny random LLaVA (baseline and VAR)."""

import numpy as np
import pytest

from var_core.analysis import var_changes
from var_core.config import VARConfig
from var_core.run import generate
from viz.changes import var_changes_figure, var_changes_markdown
from viz.compare import before_after
from viz.diff import answer_diff
from viz.evidence import (massive_activations, phi_attention_scatter, phi_by_layer, sink_attention_by_layer,
                          visual_by_phi)
from viz.figures import figure_image
from viz.grid import head_grid
from viz.heatmap import attention_heatmap
from viz.ranking import head_ranking, top_heads_table
from viz.reverse import patch_layer_head, tokens_attending
from viz.sinks import phi_overlay, sink_count_strip
from viz.tokens import strip_rows, token_strip

PROMPT = "what colour is the square ?"


@pytest.fixture(scope="module")
def traces(tiny_bundle, noise_image):
    config = VARConfig(p=0.5, tau=1.5)
    return (generate(tiny_bundle, noise_image, PROMPT, config=None, measure=config, max_new_tokens=3),
            generate(tiny_bundle, noise_image, PROMPT, config=config, max_new_tokens=3))


def test_image_views_render(traces):
    for trace in traces:
        for image in (attention_heatmap(trace, 2, None, "answer", log=True), head_grid(trace, "answer"),
                      phi_overlay(trace, 2), patch_layer_head(trace, 5)):
            assert image.mode == "RGB" and min(image.size) > 100
    assert before_after(traces[1], 2, 0, "all").width > 800


def test_chart_views_render(traces):
    for trace in traces:
        for figure in (sink_count_strip(trace, 2), head_ranking(trace), phi_attention_scatter(trace, 2),
                       massive_activations(trace), sink_attention_by_layer(trace), phi_by_layer(trace)):
            assert np.asarray(figure_image(figure)).std() > 0


def test_text_views(traces):
    baseline, with_var = traces
    strip = token_strip(with_var)
    assert len(strip) == len(strip_rows(with_var))
    assert sum(score is not None for _, score in strip) == len(with_var.query_positions)
    assert len(top_heads_table(with_var, k=5)) == 5
    reverse = tokens_attending(with_var, 5, 2)
    assert [text for text, _ in reverse] == [text for text, _ in strip] and max(s for _, s in reverse if s) == 1.0
    left, right = answer_diff(baseline.answer, with_var.answer)
    assert "".join(t for t, _ in left) == baseline.answer and "".join(t for t, _ in right) == with_var.answer


def test_massive_activations_profile_the_strongest_visual_sink_where_it_is_a_sink(traces):
    for trace in traces:
        layer = trace.profile_layer
        figure = massive_activations(trace)
        labels = [text.get_text() for text in figure.axes[0].texts if ": pos " in text.get_text()]
        position = int(trace.visual_positions[visual_by_phi(trace)[-1]])
        assert labels[1] == f"strongest visual sink candidate, a sink at layer {layer}: pos {position} '<image>'"
        assert figure.texts[0].get_text().split("\n")[2].endswith(f"at layer {layer}")  # φ by layer's peak


def test_what_var_changed_renders_from_real_traces(traces):
    changes = var_changes(*traces)
    assert np.asarray(figure_image(var_changes_figure(changes))).std() > 0
    assert changes.rows_touched > 0 and "| 5 |" in var_changes_markdown(changes)
