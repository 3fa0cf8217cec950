"""The embedded default model: two different questions about one bundled image find the same visual sinks."""

from pathlib import Path

import numpy as np
import pytest

from var_core.compare import compare_prompts, shared_sinks
from var_core.config import VARConfig
from var_core.models import load_default_model
from viz.prompts import prompt_comparison

IMAGE = Path(__file__).resolve().parents[1] / "assets" / "examples" / "demo_three_shapes.png"
PROMPTS = ("What colour is the square?", "How many shapes are there?")


@pytest.fixture(scope="module")
def pair():
    return compare_prompts(load_default_model(), IMAGE, PROMPTS, VARConfig(), max_new_tokens=3)


def test_two_questions_share_every_visual_sink(pair):
    """Measured: overlap 1.00 over the VAR layers 2–28; layers 2–10 have sinks (1, 19, 17, 17, 15, 15, 15, 12, 13
    visual sinks), each with Jaccard 1.00, in the baseline and the VAR runs alike. Not luck: the image comes before
    the question in the chat template, so causal attention leaves the visual tokens' hidden states, hence φ and the
    sinks, independent of the question — the paper's observation, exactly."""
    first, second = pair
    assert first.var.answer != second.var.answer  # two different questions, two different answers
    for a, b in ((first.var, second.var), (first.baseline, second.baseline), (first.baseline, second.var)):
        shared = shared_sinks(a, b)
        with_sinks = shared.a.any(1) | shared.b.any(1)
        assert with_sinks.sum() >= 5 and np.all(shared.jaccard[with_sinks] == 1.0)
        assert shared.overlap == 1.0
    np.testing.assert_allclose(first.var.phi_visual, second.var.phi_visual, rtol=1e-4, atol=1e-3)


def test_figure_of_the_real_pair(pair):
    first, second = pair
    layer = int(np.argmax(first.baseline.visual_sinks.sum(1)))
    out = prompt_comparison(first.baseline, second.baseline, layer)
    assert out.width <= 600 and out.height > out.width
