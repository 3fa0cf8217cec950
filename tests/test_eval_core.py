"""Core options the experiments need: head-selection and budget ablations, key masking (tiny random LLaVA)."""

import numpy as np
import pytest
import torch

from var_core.config import VARConfig
from var_core.redistribute import redistribute
from var_core.run import generate

PROMPT = "what colour is the square ?"


def test_budget_to_text_moves_sink_mass_onto_text_non_sinks():
    attn = torch.tensor([[[[0.5, 0.1, 0.2, 0.2]]]])  # keys: BOS sink, visual, visual, text
    visual = torch.tensor([[False, True, True, False]])
    sinks = torch.tensor([[True, False, False, False]])
    out = redistribute(attn, visual, sinks, torch.ones(1, 1, 1, dtype=torch.bool), 0.4,
                       receiver_mask=~visual & ~sinks)
    assert torch.allclose(out, torch.tensor([[[[0.3, 0.1, 0.2, 0.4]]]]))


def test_default_receivers_are_unchanged_by_the_new_keyword():
    attn = torch.softmax(torch.randn(1, 2, 3, 6), -1)
    visual = torch.tensor([[False, True, True, True, False, False]])
    sinks = torch.tensor([[True, True, False, False, False, False]])
    heads = torch.ones(1, 2, 3, dtype=torch.bool)
    assert torch.equal(redistribute(attn, visual, sinks, heads, 0.5),
                       redistribute(attn, visual, sinks, heads, 0.5, receiver_mask=visual))


def test_config_rejects_unknown_budget_target():
    with pytest.raises(ValueError, match="budget_to='image' must be one of"):
        VARConfig(budget_to="image")


def test_without_head_selection_every_head_row_is_redistributed(tiny_bundle, noise_image):
    selected = generate(tiny_bundle, noise_image, PROMPT, VARConfig(p=0.5, tau=2.0), max_new_tokens=2)
    everywhere = generate(tiny_bundle, noise_image, PROMPT, VARConfig(p=0.5, tau=2.0, select_heads=False),
                          max_new_tokens=2)
    layer = everywhere.settings["var_layers"][0]
    changed = ~np.isclose(everywhere.attn_to_visual[layer], everywhere.attn_to_visual_raw[layer]).all(-1)
    assert changed.all() and not selected.selected[layer].all()
    assert everywhere.settings["select_heads"] is False


def test_budget_to_text_lowers_visual_mass_instead_of_raising_it(tiny_bundle, noise_image):
    trace = generate(tiny_bundle, noise_image, PROMPT, VARConfig(p=0.9, tau=2.0, select_heads=False,
                                                                 budget_to="text"), max_new_tokens=1)
    layer = trace.settings["var_layers"][0]
    assert (trace.attn_to_visual[layer].sum(-1) <= trace.attn_to_visual_raw[layer].sum(-1) + 1e-6).all()
    assert trace.settings["budget_to"] == "text"


def test_masked_positions_get_no_attention_from_the_text(tiny_bundle, noise_image):
    prepared = tiny_bundle.adapter.prepare(tiny_bundle, noise_image, PROMPT)
    masked = prepared.visual_positions[[0, 5]].tolist()
    trace = generate(tiny_bundle, noise_image, PROMPT, max_new_tokens=2, mask_positions=masked)
    baseline = generate(tiny_bundle, noise_image, PROMPT, max_new_tokens=2)
    assert (trace.attn_to_visual[:, :, :, [0, 5]] == 0).all()
    assert (baseline.attn_to_visual[:, :, :, [0, 5]] > 0).all()
    assert np.array_equal(trace.phi_visual, baseline.phi_visual)  # the image tokens themselves are untouched
    assert trace.settings["mask_positions"] == masked


def test_mask_positions_outside_the_prompt_raise(tiny_bundle, noise_image):
    with pytest.raises(ValueError, match="outside the prompt"):
        generate(tiny_bundle, noise_image, PROMPT, max_new_tokens=1, mask_positions=[10_000])


def test_contribution_vectors_sum_to_the_attention_output(tiny_bundle, noise_image):
    from var_core.eval.probes import attention_inputs, contribution_vectors

    module = tiny_bundle.adapter.decoder_layers(tiny_bundle.model)[2].self_attn
    outputs = []
    handle = module.register_forward_hook(lambda mod, args, output: outputs.append(output[0]))
    try:
        with attention_inputs({2: module}) as seen:
            trace = generate(tiny_bundle, noise_image, PROMPT, capture_layers=[2], max_new_tokens=1)
    finally:
        handle.remove()
    rows, keys = torch.arange(trace.n_prompt), torch.arange(trace.n_prompt)
    with torch.no_grad():
        vectors = contribution_vectors(module, seen[("hidden", 2)][0], seen[("weights", 2)][0], rows, keys)
    assert torch.allclose(vectors.sum(1), outputs[0][0].float(), atol=1e-5)


@pytest.mark.parametrize("tau", [2.0, 7.9])
def test_inert_shortcut_gives_the_answer_a_real_var_run_gives(tiny_bundle, noise_image, tau):
    from var_core.eval import answers
    from var_core.eval.datasets import Sample

    sample = Sample("s", "i", "scene:1000500000", "what colour is the square ?", "yes")
    settings = {"tau": tau, "max_new_tokens": 3, "var": {"p": 1.0, "rho": 0.0, "tau": tau}}
    baseline = answers.answer(tiny_bundle, sample, {**settings, "var": None}, {})
    real = answers.answer(tiny_bundle, sample, settings, {})
    shortcut = answers.answer(tiny_bundle, sample, settings, {"VAR off": baseline})
    assert shortcut["answer"] == real["answer"]
    assert shortcut.get("inert", False) == (baseline["max_visual_phi"] <= tau) == (tau == 7.9)
