"""View 6: the evidence plots carry the planted facts."""

import numpy as np

from tests.synthetic_trace import synthetic_trace
from viz.evidence import massive_activations, phi_attention_scatter, sink_attention_by_layer, visual_attention
from viz.figures import figure_image


def test_scatter_puts_the_sink_at_high_phi_and_high_attention():
    trace = synthetic_trace()
    figure = phi_attention_scatter(trace, 2)
    others, sinks = (collection.get_offsets() for collection in figure.axes[0].collections)
    assert len(sinks) == 1 and sinks[0, 0] > trace.settings["tau"] > others[:, 0].max()
    assert sinks[0, 1] > others[:, 1].max()
    assert np.isclose(sinks[0, 1], visual_attention(trace)[2, 1 * 5 + 3])  # planted sink at (1, 3) of 3×5


def test_massive_activation_panels_annotate_sink_dims():
    figure = massive_activations(synthetic_trace())
    notes = [text.get_text() for text in figure.axes[0].texts]
    assert notes[:2] == ["φ = 7.2 (d5)", "φ = 5.6 (d5)"]  # planted 0.9·√64 and 0.7·√64
    assert len(notes) == 3
    assert figure_image(figure).size == (640, 460)
    assert "first token (BOS)" in figure.axes[0].get_yticklabels()[0].get_text()  # top band


def test_sink_tokens_receive_more_attention_per_token_in_every_layer_with_sinks():
    figure = sink_attention_by_layer(synthetic_trace(layers=4))
    sinks, others = (line.get_ydata() for line in figure.axes[0].lines[:2])
    assert np.isnan(sinks[0]) and (sinks[1:] > others[1:]).all()
