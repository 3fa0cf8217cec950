"""InternVL adapter on a tiny random `InternVLForConditionalGeneration`: 2 × 2 tiles + thumbnail."""

import numpy as np
import pytest
import torch
from PIL import Image

from tests.tiny_models import (INTERNVL_TILE, check_p_zero_hook_equals_eager,
                               check_p_zero_hook_exact_through_generate,
                               check_var_changes_logits_after_the_image_only, localise_vision_tower,
                               most_changed_grid_cell, noise_image, replaced_positions, tiny_internvl)
from var_core.config import VARConfig
from var_core.run import generate

PROMPT = "what colour is the square ?"
PER_TILE = 16


@pytest.fixture(scope="module")
def internvl():
    return tiny_internvl()


@pytest.fixture(scope="module")
def image():
    return noise_image(2 * INTERNVL_TILE, 2 * INTERNVL_TILE)  # square, twice the tile size: 2 × 2 tiles + thumbnail


@pytest.fixture(scope="module")
def local():
    """A copy whose vision tower is local: each token depends on its own pixels only."""
    bundle = tiny_internvl()
    assert localise_vision_tower(bundle.model.model.vision_tower) > 0
    return bundle


@pytest.fixture(scope="module")
def prepared(internvl, image):
    return internvl.adapter.prepare(internvl, image, PROMPT)


def test_visual_positions_are_the_processors_expansion_of_img_context(internvl, prepared):
    ids = prepared.inputs["input_ids"][0]
    tokenizer = internvl.processor.tokenizer
    assert prepared.inputs["pixel_values"].shape[0] == 5
    assert len(prepared.visual_positions) == 5 * PER_TILE
    assert torch.equal(prepared.visual_positions, torch.arange(len(prepared.visual_positions))
                       + prepared.visual_positions[0])  # one contiguous run …
    assert ids[prepared.visual_positions[0] - 1] == tokenizer.convert_tokens_to_ids("<img>")  # … between the markers
    assert ids[prepared.visual_positions[-1] + 1] == tokenizer.convert_tokens_to_ids("</img>")
    assert torch.equal(prepared.visual_positions, replaced_positions(internvl, prepared.inputs))


def test_grid_is_the_thumbnail_the_last_tile(prepared, image):
    assert prepared.grid == (4, 4)
    assert torch.equal(prepared.grid_positions, prepared.visual_positions[-PER_TILE:])
    thumbnail = np.array(image.resize((INTERNVL_TILE, INTERNVL_TILE), Image.Resampling.BICUBIC)).astype(int)
    assert prepared.image.shape == (INTERNVL_TILE, INTERNVL_TILE, 3)
    assert np.abs(prepared.image.astype(int) - thumbnail).mean() < 2


def test_an_image_of_one_tile_has_no_thumbnail_and_is_its_own_grid(internvl):
    single = internvl.adapter.prepare(internvl, noise_image(INTERNVL_TILE, INTERNVL_TILE), PROMPT)
    assert single.inputs["pixel_values"].shape[0] == 1
    assert torch.equal(single.grid_positions, single.visual_positions) and single.grid == (4, 4)


@pytest.mark.parametrize("row, col", [(0, 3), (3, 0), (1, 2)])
def test_each_grid_token_sees_its_own_cell(local, image, row, col):
    assert most_changed_grid_cell(local, image, PROMPT, row, col) == row * 4 + col


def test_hook_with_p_zero_equals_eager_and_only_text_attention_is_hooked(internvl, prepared):
    check_p_zero_hook_equals_eager(internvl, prepared, "Qwen2Attention")


def test_hook_is_exact_through_generate_decode_steps(internvl, prepared):
    check_p_zero_hook_exact_through_generate(internvl, prepared)


def test_var_changes_logits_after_the_image_only(internvl, prepared):
    check_var_changes_logits_after_the_image_only(internvl, prepared)


def test_generate_traces_the_thumbnail_grid(internvl, image):
    trace = generate(internvl, image, PROMPT, config=VARConfig(p=0.5, tau=1.0), max_new_tokens=3)
    layers, heads = internvl.num_layers, internvl.num_heads
    queries = len(trace.query_positions)
    assert trace.grid == (4, 4) and trace.attn_to_visual.shape == (layers, heads, queries, PER_TILE)
    assert len(trace.image_token_positions) == 5 * PER_TILE
    assert trace.phi.shape == (layers, trace.n_prompt) and trace.image.shape == (INTERNVL_TILE, INTERNVL_TILE, 3)
