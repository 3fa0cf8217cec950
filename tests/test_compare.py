"""Two prompts on one image: shared_sinks on planted sinks (hand-checked Jaccard), refusals of unlike runs."""

import dataclasses

import numpy as np
import pytest

from tests.synthetic_trace import synthetic_trace
from var_core.compare import compare_prompts, shared_sinks
from var_core.config import VARConfig


def with_sinks(trace, sinks: dict[int, list[int]]):
    """`trace` whose visual sinks at each listed layer are exactly the given grid cells."""
    mask = trace.sink_mask.copy()
    for layer, cells in sinks.items():
        mask[layer, trace.visual_positions] = False
        mask[layer, trace.visual_positions[cells]] = True
    return dataclasses.replace(trace, sink_mask=mask)


def planted_pair():
    """A: the planted sink (cell 8) in layers 1–3. B: cell 8 in layer 1, cells 0 and 8 in layer 2, only 0 in layer 3."""
    a = synthetic_trace(grid=(3, 5), sink=(1, 3), layers=4)
    b = with_sinks(dataclasses.replace(a, prompt="how many shapes ?"), {2: [0, 8], 3: [0]})
    return a, b


def test_per_layer_sinks_intersection_and_jaccard():
    shared = shared_sinks(*planted_pair())
    assert shared.layers == [0, 1, 2, 3] and shared.var_layers == [1, 2, 3]
    assert [np.nonzero(row)[0].tolist() for row in shared.a] == [[], [8], [8], [8]]
    assert [np.nonzero(row)[0].tolist() for row in shared.b] == [[], [8], [0, 8], [0]]
    assert [np.nonzero(row)[0].tolist() for row in shared.both] == [[], [8], [8], []]
    assert np.isnan(shared.jaccard[0]) and shared.jaccard[1:].tolist() == [1.0, 0.5, 0.0]


def test_overlap_pools_the_var_layers():
    """|A ∩ B| = 1 + 1 + 0 and |A ∪ B| = 1 + 2 + 2 over layers 1–3, so 2 / 5."""
    a, b = planted_pair()
    assert shared_sinks(a, b).overlap == pytest.approx(0.4)
    assert shared_sinks(a, a).overlap == 1.0
    assert shared_sinks(a, b, layers=[2]).overlap == pytest.approx(0.5)
    assert shared_sinks(a, b, layers=[0]).overlap is None  # no VAR layer, no sink: nothing to compare


def test_summary_lists_grid_indices():
    summary = shared_sinks(*planted_pair()).summary()
    assert summary["layers"][2] == {"layer": 2, "a": [8], "b": [0, 8], "shared": [8], "jaccard": 0.5}
    assert summary["layers"][0]["jaccard"] is None and summary["overlap"] == pytest.approx(0.4)


def test_at_names_the_compared_layers():
    shared = shared_sinks(*planted_pair(), layers=[1, 3])
    assert shared.at(3) == 1
    with pytest.raises(ValueError, match="not among the compared layers 1 … 3"):
        shared.at(2)


def test_different_images_are_refused():
    a, _ = planted_pair()
    image = a.image.copy()
    image[0, 0, 0] += 1
    with pytest.raises(ValueError, match="different images"):
        shared_sinks(a, dataclasses.replace(a, image=image))
    with pytest.raises(ValueError, match="different images"):
        shared_sinks(a, dataclasses.replace(a, image=a.image[:-1]))


@pytest.mark.parametrize("change, message", [({"grid": (5, 3)}, "differ in grid"),
                                             ({"model_name": "other"}, "differ in model_name"),
                                             ({"settings": {"tau": 9.0}}, "different tau")])
def test_unlike_runs_are_refused(change, message):
    a, _ = planted_pair()
    with pytest.raises(ValueError, match=message):
        shared_sinks(a, dataclasses.replace(a, **change))


def test_bad_layers_are_refused():
    with pytest.raises(ValueError, match="0 … 3"):
        shared_sinks(*planted_pair(), layers=[7])


@pytest.mark.parametrize("prompts, message", [(("only one",), "exactly two"), ("ab", "exactly two"),
                                              (("a", "  "), "prompt B is empty"), ((None, "b"), "prompt A is empty")])
def test_compare_prompts_refuses_anything_but_two_prompts(prompts, message):
    with pytest.raises(ValueError, match=message):
        compare_prompts(None, np.zeros((16, 16, 3), np.uint8), prompts, None, 2)


def test_compare_prompts_runs_both_prompts_on_one_image(tiny_bundle, noise_image):
    steps = []
    first, second = compare_prompts(tiny_bundle, noise_image, ("What is it?", "Where is it?"), VARConfig(), 2,
                                    on_step=steps.append)
    assert steps == ["prompt A: baseline", "prompt A: VAR", "prompt B: baseline", "prompt B: VAR"]
    assert (first.var.prompt, second.baseline.prompt) == ("What is it?", "Where is it?")
    assert shared_sinks(first.var, second.baseline).layers == list(range(first.var.num_layers))
