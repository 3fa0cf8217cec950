"""Write one example PNG of each view into docs/views/ from a synthetic default-model-sized Trace.

Run: `python -m docs.views.make_examples` (from the repository root). The Trace is synthetic (tests/synthetic_trace.py:
a planted visual sink, a known head ranking) drawn over a scene from var_core.scenes, so the pictures show what each
view is for; they are not measurements of a model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from tests.synthetic_trace import synthetic_trace
from var_core.scenes import make_scene, render
from viz.canvas import BACKGROUND, INK, font, text_size
from viz.compare import before_after
from viz.diff import DIFF_COLORS, answer_diff
from viz.evidence import massive_activations, phi_attention_scatter, phi_by_layer, sink_attention_by_layer
from viz.figures import figure_image
from viz.grid import head_grid
from viz.heatmap import attention_heatmap
from viz.ranking import head_ranking
from viz.reverse import patch_layer_head, tokens_attending
from viz.sinks import phi_overlay, sink_count_strip
from viz.tokens import token_strip

OUT = Path(__file__).parent


def highlighted(pairs: list[tuple[str, object]], colour_of) -> Image.Image:
    """A static preview of what gr.HighlightedText shows for `pairs` (docs only)."""
    width = sum(text_size(text, 14)[0] + 6 for text, _ in pairs) + 12
    image = Image.new("RGB", (width, 34), BACKGROUND)
    draw = ImageDraw.Draw(image)
    x = 6
    for text, label in pairs:
        w = text_size(text, 14)[0] + 4
        if label is not None:
            draw.rectangle((x, 6, x + w, 28), fill=colour_of(label))
        draw.text((x + 2, 17), text, fill=INK, font=font(14), anchor="lm")
        x += w + 2
    return image


def main() -> None:
    trace = synthetic_trace(layers=30, heads=9, grid=(8, 8), sink=(6, 1), hidden=576, answer_tokens=6)
    scene = make_scene(7)
    trace.image = np.asarray(render(scene).convert("RGB"))
    layer = 12
    views = {
        "heatmap": attention_heatmap(trace, layer, None, "answer", log=True),
        "head_grid": head_grid(trace, "answer", tile=40),
        "phi_overlay": phi_overlay(trace, layer),
        "sink_counts": figure_image(sink_count_strip(trace, layer)),
        "head_ranking": figure_image(head_ranking(trace, "answer")),
        "before_after": before_after(trace, layer, 0, "answer"),
        "evidence_phi_vs_attention": figure_image(phi_attention_scatter(trace, layer)),
        "evidence_massive_activations": figure_image(massive_activations(trace)),
        "evidence_sink_attention": figure_image(sink_attention_by_layer(trace)),
        "evidence_phi_by_layer": figure_image(phi_by_layer(trace, [trace.n_prompt - 1])),
        "reverse_layer_head": patch_layer_head(trace, 6 * 8 + 1),
        "reverse_tokens": highlighted(tokens_attending(trace, 10, layer, 0),
                                      lambda s: tuple(int(255 - s * (255 - c)) for c in (230, 159, 0))),
        "token_strip": highlighted(token_strip(trace, relative=True),
                                   lambda s: tuple(int(255 - s * (255 - c)) for c in (86, 180, 233))),
    }
    left, right = answer_diff("The square is red and small.", "The square is red and large.")
    colour = {label: tuple(int(value[i:i + 2], 16) // 2 + 128 for i in (1, 3, 5))
              for label, value in DIFF_COLORS.items()}
    views["answer_diff_baseline"] = highlighted(left, colour.get)
    views["answer_diff_var"] = highlighted(right, colour.get)
    for name, image in views.items():
        image.save(OUT / f"{name}.png", optimize=True)
        print(OUT / f"{name}.png", image.size)


if __name__ == "__main__":
    main()
