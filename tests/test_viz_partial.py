"""Every view on a Trace that captured only some layers: it renders, it shows the asked layer's data, and a layer that
was not captured is a clear ValueError."""

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from tests.synthetic_trace import layer_marked_trace, partial_trace, synthetic_trace
from var_core.analysis import Analysis
from var_core.trace import Trace
from viz.canvas import display_size, title_height
from viz.compare import before_after
from viz.evidence import massive_activations, phi_attention_scatter, phi_by_layer, sink_attention_by_layer
from viz.grid import head_grid
from viz.heatmap import attention_heatmap
from viz.notebook import analysis_html, sink_layer, trace_html
from viz.queries import attention_map, head_maps
from viz.ranking import head_ranking, ranked_heads, top_heads_table
from viz.reverse import patch_layer_head, patch_scores, tokens_attending
from viz.sinks import phi_overlay, sink_count_strip
from viz.tokens import token_strip

VIEWS = {
    "heatmap": lambda t: attention_heatmap(t, 3),
    "head grid": head_grid,
    "before / after": lambda t: before_after(t, 3),
    "token strip": lambda t: token_strip(t, 3),
    "token strip, mean over layers": token_strip,
    "reverse tokens": lambda t: tokens_attending(t, 3, 3),
    "reverse tile": lambda t: patch_layer_head(t, 3),
    "φ overlay at a layer not captured": lambda t: phi_overlay(t, 2),
    "sink strip": sink_count_strip,
    "head ranking": head_ranking,
    "top heads": top_heads_table,
    "φ vs attention": lambda t: phi_attention_scatter(t, 3),
    "massive activations": massive_activations,
    "sink attention by layer": sink_attention_by_layer,
    "φ by layer": phi_by_layer,
    "notebook trace": trace_html,
    "notebook analysis": lambda t: analysis_html(Analysis(baseline=t, var=t)),
}
LAYER_VIEWS = {
    "heatmap": lambda t, layer: attention_heatmap(t, layer),
    "before / after": lambda t, layer: before_after(t, layer),
    "token strip": lambda t, layer: token_strip(t, layer),
    "reverse tokens": lambda t, layer: tokens_attending(t, 0, layer),
    "φ vs attention": lambda t, layer: phi_attention_scatter(t, layer),
}


@pytest.fixture
def marked() -> Trace:
    """Layers 1 and 3 of 4 captured; layer l's attention is bright on visual token l."""
    return layer_marked_trace(layers=4, captured=(1, 3))


def brightest_cell(picture: Image.Image, trace: Trace) -> int:
    """Raster index of the grid cell whose centre is brightest in a heatmap drawn over `trace.image`."""
    pixels = np.asarray(picture, dtype=np.int32)
    rows, cols = trace.grid
    width, height = display_size(trace.image.shape[1], trace.image.shape[0], 336)
    centres = [pixels[title_height() + int((row + 0.5) * height / rows), int((col + 0.5) * width / cols)].sum()
               for row in range(rows) for col in range(cols)]
    return int(np.argmax(centres))


@pytest.mark.parametrize("view", VIEWS.values(), ids=VIEWS.keys())
def test_every_view_renders_a_partial_trace(marked, view):
    assert isinstance(view(marked), (Image.Image, Figure, list, str))


def test_the_heatmap_of_a_captured_layer_shows_that_layers_attention(marked):
    assert brightest_cell(attention_heatmap(marked, 3), marked) == 3
    assert brightest_cell(attention_heatmap(marked, 1), marked) == 1


def test_maps_are_float32_from_float16_attention(marked):
    assert marked.attn_to_visual.dtype == np.float16
    values = attention_map(marked, 3)
    assert values.dtype == np.float32 and values.flat[3] == pytest.approx(0.9, abs=1e-3)
    assert head_maps(marked).shape == (2, 3, 3, 5) and head_maps(marked).dtype == np.float32


@pytest.mark.parametrize("view", LAYER_VIEWS.values(), ids=LAYER_VIEWS.keys())
def test_a_layer_that_was_not_captured_is_a_clear_error(marked, view):
    with pytest.raises(ValueError, match=r"layer 2 was not captured \(captured: 1, 3\)"):
        view(marked, 2)
    with pytest.raises(ValueError, match="layer=4 does not exist"):
        view(marked, 4)


def test_the_reverse_view_reads_the_asked_layer(marked):
    assert np.allclose(patch_scores(marked, 3, layer=3), 0.9, atol=1e-3)
    assert np.allclose(patch_scores(marked, 3, layer=1), 0.1 / 14, atol=1e-4)
    assert np.allclose(patch_scores(marked, 3), (0.9 + 0.1 / 14) / 2, atol=1e-3)  # mean over the captured layers


def test_ranking_names_model_layers_and_keeps_their_statistics():
    full = synthetic_trace(layers=4)
    part = partial_trace(full, [1, 3])
    expected = [row for row in ranked_heads(full) if row["layer"] in (1, 3)]
    ranked = ranked_heads(part)
    assert [(row["layer"], row["head"], row["selected"]) for row in ranked] == [
        (row["layer"], row["head"], row["selected"]) for row in expected]
    assert [row["r"] for row in ranked] == pytest.approx([row["r"] for row in expected])
    assert {row[1] for row in top_heads_table(part, k=6)} == {1, 3}


def test_token_strip_matches_the_full_trace_at_a_captured_layer():
    full = synthetic_trace(layers=4)
    assert token_strip(partial_trace(full, [1, 3]), 3) == token_strip(full, 3)


def test_sink_attention_is_drawn_at_the_captured_layers(marked):
    lines = sink_attention_by_layer(marked).axes[0].lines
    assert [list(line.get_xdata()) for line in lines] == [[1, 3], [1, 3]]


def test_the_grid_has_one_row_per_captured_layer():
    full = synthetic_trace(layers=4)
    rows = head_grid(full).height - head_grid(partial_trace(full, [1, 3])).height
    assert rows > 0 and rows % 2 == 0


def test_the_notebook_picture_is_drawn_at_a_captured_layer(marked):
    assert sink_layer(marked) in (1, 3)


def test_a_saved_partial_trace_loads_with_its_layers(marked, tmp_path):
    loaded = Trace.load(marked.save(tmp_path / "partial.npz"))
    assert loaded.captured_layers == [1, 3] and loaded.num_layers == 4
    assert np.array_equal(np.asarray(attention_heatmap(loaded, 3)), np.asarray(attention_heatmap(marked, 3)))
