"""Qwen2-VL / Qwen2.5-VL adapter on tiny random models: dynamic resolution, merged patches, 3-D rope ids."""

import numpy as np
import pytest
import torch

from tests.tiny_models import (QWEN_MERGE, QWEN_PATCH, check_p_zero_hook_equals_eager,
                               check_p_zero_hook_exact_through_generate,
                               check_var_changes_logits_after_the_image_only, localise_vision_tower,
                               most_changed_grid_cell, noise_image, replaced_positions, tiny_qwen2_5_vl,
                               tiny_qwen2_vl)
from var_core.config import VARConfig
from var_core.run import generate

PROMPT = "what colour is the square ?"
HEIGHT, WIDTH = 32, 48  # multiples of patch × merge = 8: the processor keeps the size → 4 × 6 merged tokens
BUILDERS = {"qwen2_vl": tiny_qwen2_vl, "qwen2_5_vl": tiny_qwen2_5_vl}
ATTENTION = {"qwen2_vl": "Qwen2VLAttention", "qwen2_5_vl": "Qwen2_5_VLAttention"}


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def family(request):
    return request.param


@pytest.fixture(scope="module")
def qwen(family):
    return BUILDERS[family]()


@pytest.fixture(scope="module")
def image():
    return noise_image(HEIGHT, WIDTH)


@pytest.fixture(scope="module")
def local(family):
    """A copy whose vision tower is local: each token depends on its own pixels only."""
    bundle = BUILDERS[family]()
    assert localise_vision_tower(bundle.model.model.visual) > 0
    return bundle


@pytest.fixture(scope="module")
def prepared(qwen, image):
    return qwen.adapter.prepare(qwen, image, PROMPT)


def test_visual_positions_are_the_processors_expansion_of_image_pad(qwen, prepared):
    ids = prepared.inputs["input_ids"][0]
    t, h, w = prepared.inputs["image_grid_thw"][0].tolist()
    assert (t, h, w) == (1, HEIGHT // QWEN_PATCH, WIDTH // QWEN_PATCH)
    assert len(prepared.visual_positions) == t * h * w // QWEN_MERGE ** 2 == 24
    config = qwen.model.config
    assert ids[prepared.visual_positions[0] - 1] == config.vision_start_token_id
    assert ids[prepared.visual_positions[-1] + 1] == config.vision_end_token_id
    assert torch.equal(prepared.visual_positions, replaced_positions(qwen, prepared.inputs))


def test_grid_is_the_merged_patch_grid_over_the_resized_image(prepared, image):
    assert prepared.grid == (HEIGHT // (QWEN_PATCH * QWEN_MERGE), WIDTH // (QWEN_PATCH * QWEN_MERGE)) == (4, 6)
    assert prepared.cells.ravel().tolist() == list(range(24)) and len(prepared.views) == 1  # one view, raster
    assert np.array_equal(prepared.image, np.array(image))  # size kept, pixels rebuilt exactly


def test_a_resized_image_is_shown_at_the_size_the_model_used(qwen):
    prepared = qwen.adapter.prepare(qwen, noise_image(70, 30), PROMPT)
    t, h, w = prepared.inputs["image_grid_thw"][0].tolist()
    assert prepared.image.shape == (h * QWEN_PATCH, w * QWEN_PATCH, 3)
    assert prepared.grid == (h // QWEN_MERGE, w // QWEN_MERGE)


@pytest.mark.parametrize("row, col", [(0, 5), (3, 0), (2, 3)])
def test_each_grid_token_sees_its_own_cell(local, image, row, col):
    assert most_changed_grid_cell(local, image, PROMPT, row, col) == row * 6 + col


def test_hook_with_p_zero_equals_eager_and_only_text_attention_is_hooked(qwen, family, prepared):
    check_p_zero_hook_equals_eager(qwen, prepared, ATTENTION[family])


def test_hook_is_exact_through_generate_with_3d_rope_positions(qwen, prepared):
    check_p_zero_hook_exact_through_generate(qwen, prepared)


def test_var_changes_logits_after_the_image_only(qwen, prepared):
    check_var_changes_logits_after_the_image_only(qwen, prepared)


def test_generate_traces_every_merged_token(qwen, image):
    trace = generate(qwen, image, PROMPT, config=VARConfig(p=0.5, tau=1.0), max_new_tokens=3)
    layers, heads = qwen.num_layers, qwen.num_heads
    queries = len(trace.query_positions)
    assert trace.grid == (4, 6) and trace.attn_to_visual.shape == (layers, heads, queries, 24)
    assert len(trace.image_token_positions) == 24 and trace.image.shape == (HEIGHT, WIDTH, 3)
    assert trace.phi.shape == trace.sink_mask.shape == (layers, trace.n_prompt)
    assert len(trace.tokens) == trace.n_prompt + 3
