"""The probes by name (`var_core.interventions.probes`): the image-centric ranking by hand, the parameter checks, and
each probe built from a baseline and run through `generate` on the tiny LLaVA."""

from types import SimpleNamespace

import numpy as np
import pytest

from var_core.interventions.effects import answer_change
from var_core.interventions.knockout import HeadKnockout
from var_core.interventions.masking import MaskTokens
from var_core.interventions.probes import PROBES, build_probe, check_probe, image_centric_pairs, probe
from var_core.run import generate

PROMPT = "what colour is the square ?"


def selection_trace(selected, layers, query_positions, n_prompt):
    return SimpleNamespace(selected=np.array(selected, dtype=bool), layers_captured=list(layers),
                           query_positions=np.array(query_positions), n_prompt=n_prompt)


def test_image_centric_pairs_rank_by_the_share_of_answer_rows_selected():
    # layers 3 and 5 captured, 3 heads, 4 query rows; rows 0–1 are prompt rows (positions 5, 6 < n_prompt − 1 = 7)
    selected = [[[1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 0]],   # layer 3: head 0 never on an answer row, 1: 2/2, 2: 1/2
                [[0, 0, 1, 0], [1, 1, 1, 1], [0, 0, 0, 0]]]   # layer 5: head 0 1/2, head 1 2/2, head 2 never
    trace = selection_trace(selected, [3, 5], [5, 6, 7, 8], n_prompt=8)
    assert image_centric_pairs(trace, top=10) == [(3, 1), (5, 1), (3, 2), (5, 0)]  # ties: lower layer, lower head
    assert image_centric_pairs(trace, top=2) == [(3, 1), (5, 1)]
    with pytest.raises(ValueError, match="no answer row"):
        image_centric_pairs(selection_trace(selected, [3, 5], [1, 2, 3, 4], n_prompt=8), top=2)


def test_probe_parameters_are_checked_before_any_model_work():
    assert set(PROBES) == {"mask", "knockout"} and probe("mask").defaults == {"tokens": "sinks", "patch": None,
                                                                             "seed": 0}
    check_probe("mask")
    check_probe("mask", tokens="patch", patch=3)
    check_probe("knockout", heads=[(1, 2)])
    for name, params, message in [
            ("mask", {"tokens": "all"}, "tokens='all' must be one of"),
            ("mask", {"tokens": "patch"}, "tokens='patch' needs patch"),
            ("mask", {"patch": -1}, r"patch=-1 must be an integer"),
            ("mask", {"seed": 1.5}, r"seed=1.5 must be an integer"),
            ("mask", {"alpha": 1}, "takes tokens, patch, seed; not alpha"),
            ("knockout", {"top": 0}, r"top=0 must be an integer in \[1, 10000\]"),
            ("knockout", {"heads": [(1,)]}, r"must be a \(layer, head\) pair"),
            ("knockout", {"heads": [(0, 1)], "p": 0.4}, "takes heads, top; not p")]:
        with pytest.raises(ValueError, match=message):
            check_probe(name, **params)
    with pytest.raises(ValueError, match="unknown probe 'ablate'; choose from mask, knockout"):
        probe("ablate")


# ---- built from a baseline, through generate on the tiny LLaVA ----

@pytest.fixture(scope="module")
def baseline(tiny_bundle, noise_image):
    return generate(tiny_bundle, noise_image, PROMPT, max_new_tokens=4)


def run(tiny_bundle, noise_image, intervention):
    return generate(tiny_bundle, noise_image, PROMPT, max_new_tokens=4, intervention=intervention)


def test_the_knockout_probe_defaults_to_the_baselines_top_image_centric_heads(tiny_bundle, noise_image, baseline):
    built = build_probe("knockout", baseline, top=3)
    assert isinstance(built, HeadKnockout) and built.pairs == sorted(image_centric_pairs(baseline, 3))
    assert len(built.pairs) == 3
    trace = run(tiny_bundle, noise_image, built)
    assert trace.settings["intervention"] == built.settings()
    assert (trace.top_probs != baseline.top_probs).any()  # knocking out three heads moves the answer's distribution
    assert -1.0 <= answer_change(baseline, trace).change <= 1.0
    assert build_probe("knockout", baseline, heads=[(2, 1)]).pairs == [(2, 1)]  # named pairs win over the ranking


def test_the_mask_probe_masks_what_the_baseline_names(tiny_bundle, noise_image, baseline):
    patch = build_probe("mask", baseline, tokens="patch", patch=2)
    assert isinstance(patch, MaskTokens) and patch.settings()["masked"] == "patch 2"
    assert list(patch.settings()["positions"]) == [int(baseline.visual_positions[2])]
    masked = run(tiny_bundle, noise_image, patch)
    # the masked key gets no attention after the image; before masking it had some
    after_image = masked.query_positions > baseline.visual_positions[-1]
    assert not masked.attn_to_visual[:, :, after_image, 2].any()
    assert baseline.attn_to_visual[:, :, after_image, 2].any()
    with pytest.raises(ValueError, match=r"patch=999: pick a visual token 0 … "):
        build_probe("mask", baseline, tokens="patch", patch=999)
