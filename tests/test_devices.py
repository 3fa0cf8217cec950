"""A model placed by accelerate's device_map, with layers offloaded to disk (weights on the meta device between
calls): Analyze and every explanation map equal the unsplit model's."""

import numpy as np
import torch
from accelerate import dispatch_model

from tests.tiny_llava import tiny_llava
from var_core.config import VARConfig
from var_core.explain import explain
from var_core.run import generate

PROMPT = "what colour is the square ?"
VAR = VARConfig(p=0.6, tau=1.0, rho=0.0, min_visual_mass=0.0, layers=(1, 2))
PLACEMENT = {"model.vision_tower": "cpu", "model.multi_modal_projector": "cpu", "model.language_model.embed_tokens": "cpu",
             "model.language_model.layers.0": "cpu", "model.language_model.layers.1": "disk",
             "model.language_model.layers.2": "cpu", "model.language_model.layers.3": "disk",
             "model.language_model.norm": "cpu", "model.language_model.rotary_emb": "cpu", "lm_head": "cpu"}


def test_an_offloaded_model_traces_and_explains_like_the_whole_one(noise_image, tmp_path):
    whole, placed = tiny_llava(), tiny_llava()
    dispatch_model(placed.model, device_map=PLACEMENT, offload_dir=str(tmp_path))
    assert torch.device("meta") in {parameter.device for parameter in placed.model.parameters()}  # really offloaded
    trace, expected = (generate(bundle, noise_image, PROMPT, VAR, max_new_tokens=3) for bundle in (placed, whole))
    assert trace.tokens == expected.tokens
    np.testing.assert_array_equal(trace.attn_to_visual, expected.attn_to_visual)
    assert (trace.attn_to_visual != trace.attn_to_visual_raw).any()  # VAR acted
    maps, expected_maps = (explain(bundle, noise_image, PROMPT, VAR) for bundle in (placed, whole))
    for method, values in maps.maps.items():
        np.testing.assert_allclose(values, expected_maps.maps[method], atol=1e-7, err_msg=method)
    assert all(parameter.requires_grad for parameter in placed.model.parameters() if not parameter.is_inference())
