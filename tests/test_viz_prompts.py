"""View 11: two prompts on one image — shared / only-A / only-B sink cells where planted, readable size, titles."""

import dataclasses

import numpy as np
import pytest

from tests.test_compare import planted_pair
from viz.figures import figure_image
from viz.prompts import SINK_COLOURS, mpl_text, overlap_by_layer, prompt_comparison, short_prompt, sink_classes


def test_each_sink_cell_is_filled_with_its_class():
    a, b = planted_pair()  # layer 2: A {8}, B {0, 8}; layer 3: A {8}, B {0}
    out = np.asarray(sink_classes(a.visual_sinks[3], b.visual_sinks[3], a.cell_map, a.image, 300)).astype(int)
    assert out.shape == (300, 500, 3)

    def nearest(row, col):  # the class colour closest to the centre of cell (row, col), None for plain grey
        pixel = out[row * 100 + 50, col * 100 + 50]
        if np.ptp(pixel) < 10:
            return None
        return min(SINK_COLOURS, key=lambda name: np.abs(pixel - np.array(SINK_COLOURS[name])).sum())

    assert nearest(1, 3) == "only A" and nearest(0, 0) == "only B" and nearest(2, 2) is None
    both = np.asarray(sink_classes(a.visual_sinks[2], b.visual_sinks[2], a.cell_map, a.image, 300)).astype(int)
    assert np.abs(both[150, 350] - np.array(SINK_COLOURS["both"])).sum() < 100


def test_figure_fits_a_phone_and_refuses_other_images():
    a, b = planted_pair()
    out = prompt_comparison(a, b, 2)
    assert 400 <= out.width <= 600  # at 390 px wide the 14–15 px text shows at ≥ 9 px
    assert out.height > 3 * 120  # three rows: φ, attention, shared sinks
    with pytest.raises(ValueError, match="different images"):
        prompt_comparison(a, dataclasses.replace(b, image=255 - b.image), 2)
    with pytest.raises(ValueError, match="does not exist"):
        prompt_comparison(a, b, 9)


def test_long_and_odd_prompts_are_cut_to_one_line():
    assert short_prompt("What\ncolour\tis  it?") == "What colour is it?"
    cut = short_prompt("word " * 30)
    assert len(cut) == 50 and cut.endswith("…")
    assert mpl_text("costs $5 or $6") == r"costs \$5 or \$6"


def test_overlap_plot_bars_are_the_per_layer_jaccard():
    a, b = planted_pair()
    b = dataclasses.replace(b, prompt="Is $x$ > $5?")
    figure = overlap_by_layer(a, b, layer=2)
    heights = [path.vertices[:, 1].max() for path in figure.axes[0].collections[0].get_paths()]
    assert heights == [0.0, 1.0, 0.5, 0.0]  # layer 0 has no sink (NaN, drawn as a grey ×)
    texts = [text.get_text() for text in figure.texts]
    assert "0.40 over VAR layers" in texts[0] and r"B: Is \$x\$ > \$5?" in texts[1]
    assert figure_image(figure).width <= 600  # renders (no mathtext parse of the prompt)
