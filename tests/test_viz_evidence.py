"""View 6: the evidence plots carry the planted facts."""

import dataclasses

import numpy as np
import pytest

from tests.synthetic_trace import layer_marked_trace, synthetic_trace
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


def test_scatter_works_at_every_captured_layer_and_says_when_it_has_no_sink():
    marked = layer_marked_trace(layers=4, captured=(1, 3))
    for layer in (1, 3):
        points = np.concatenate([c.get_offsets() for c in phi_attention_scatter(marked, layer).axes[0].collections])
        assert points[:, 1].max() == pytest.approx(0.9, abs=1e-3)  # that layer's planted bright token
    title = phi_attention_scatter(synthetic_trace(), 0).texts[0].get_text()
    assert "\nno visual sink at layer 0 (largest visual φ " in title
    assert "\n1 visual sink at layer 2\n" in phi_attention_scatter(synthetic_trace(), 2).texts[0].get_text()


def _band_labels(figure) -> list[str]:
    """The three band labels of the massive-activation figure, top band first."""
    return [text.get_text() for text in figure.axes[0].texts if ": pos " in text.get_text()]


def test_massive_activation_panels_annotate_sink_dims():
    figure = massive_activations(synthetic_trace())
    notes = [text.get_text() for text in figure.axes[0].texts if text.get_text().startswith("φ =")]
    assert notes == ["φ = 7.2 (d5)", "φ = 5.6 (d5)", notes[2]]  # planted 0.9·√64 and 0.7·√64
    assert figure_image(figure).size == (640, 500)
    assert _band_labels(figure)[0] == "first token (BOS), a sink at layer 2: pos 0 '<s>'"  # top band


def test_massive_activations_name_the_strongest_sink_phi_by_layer_names():
    trace = synthetic_trace()  # profile at layer 2, of BOS, the planted sink (1, 3) and visual token 0
    sink = int(trace.visual_positions[1 * 5 + 3])
    strongest = [label for label in _lines(phi_by_layer(trace)) if label.startswith("strongest")]
    assert strongest == [f"strongest visual sink candidate\npos {sink} patch (1, 3)"]
    labels = _band_labels(massive_activations(trace))
    assert labels[1] == f"strongest visual sink candidate, a sink at layer 2: pos {sink} '<image>'"
    assert labels[2].startswith("median-φ visual token at layer 2, no sink at layer 2: pos 3 ")
    # a profile recorded at a layer without visual sinks, of another visual token: it is not called the strongest
    elsewhere = dataclasses.replace(trace, profile_layer=0, profile_tokens=np.array([0, 7, 3]))
    figure = massive_activations(elsewhere)
    labels = _band_labels(figure)
    assert labels[1] == "highest-φ visual token at layer 0, no sink at layer 0: pos 7 '<image>'"
    assert not any(label.startswith("strongest") for label in labels)
    title = figure.texts[0].get_text().split("\n")
    assert title[0] == "Massive activations entering layer 0 (dashed: τ = 2)"
    assert title[1].startswith("no visual sink at layer 0 (largest visual φ ")
    assert title[2] == f"strongest visual sink candidate: patch (1, 3), pos {sink}, φ = 6.0 at layer 1"


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
