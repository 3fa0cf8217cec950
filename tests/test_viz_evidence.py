"""View 6: the evidence plots carry the planted facts."""

import numpy as np
import pytest

from tests.synthetic_trace import synthetic_trace
from viz.evidence import (massive_activations, phi_attention_scatter, phi_by_layer, sink_attention_by_layer,
                          visual_attention)
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


def _lines(figure) -> dict[str, np.ndarray]:
    """Legend label → y data of each line of the φ-by-layer figure."""
    return {line.get_label(): np.asarray(line.get_ydata()) for line in figure.axes[0].lines}


def test_phi_by_layer_draws_bos_the_planted_sink_and_a_typical_token_from_phi():
    trace = synthetic_trace(layers=5, grid=(3, 5), sink=(1, 3))
    lines = _lines(phi_by_layer(trace))
    bos, sink, typical, tau = lines
    position = int(trace.visual_positions[1 * 5 + 3])
    assert bos == "first token (BOS)\npos 0 '<s>'" and tau == "τ = 2 (sink threshold)"
    assert sink == f"strongest visual sink candidate\npos {position} patch (1, 3)"
    assert np.array_equal(lines[bos], trace.phi[:, 0]) and np.array_equal(lines[sink], trace.phi[:, position])
    assert typical.startswith("typical visual token\npos ")
    median = int(typical.split("pos ")[1].split()[0])
    peaks = trace.phi_visual.max(0)
    assert median in trace.visual_positions and trace.phi[:, median].max() == np.sort(peaks)[len(peaks) // 2]
    assert np.array_equal(lines[typical], trace.phi[:, median])
    assert np.allclose(lines[tau], 2.0)


def test_phi_by_layer_adds_chosen_prompt_tokens_once_and_refuses_others():
    trace = synthetic_trace()
    lines = _lines(phi_by_layer(trace, [trace.n_prompt - 1, 0]))
    assert len(lines) == 5  # BOS, sink, typical, the last prompt token (BOS already drawn), τ
    assert list(lines)[0] == "first token (BOS)\npos 0 '<s>'"  # a chosen position keeps its first role
    assert np.array_equal(lines[f"chosen token\npos {trace.n_prompt - 1} ':'"], trace.phi[:, trace.n_prompt - 1])
    for bad in ([trace.n_prompt], [-1], [1.5]):
        with pytest.raises(ValueError, match=f"0 … {trace.n_prompt - 1}"):
            phi_by_layer(trace, bad)
