"""LLaVA-NeXT adapter on a tiny random `LlavaNextForConditionalGeneration` (base view + 1×2 high-res tiles)."""

import numpy as np
import pytest
import torch
from PIL import Image

from tests.tiny_models import (NEXT_SIZE, check_p_zero_hook_equals_eager, check_p_zero_hook_exact_through_generate,
                               check_var_changes_logits_after_the_image_only, localise_vision_tower,
                               most_changed_grid_cell, noise_image, replaced_positions, tiny_llava_next)
from var_core.config import VARConfig
from var_core.run import generate

PROMPT = "what colour is the square ?"


@pytest.fixture(scope="module")
def next_bundle():
    return tiny_llava_next()


@pytest.fixture(scope="module")
def image():
    return noise_image(NEXT_SIZE, 2 * NEXT_SIZE)  # wide: the processor picks the 32 × 64 pinpoint (1 × 2 tiles)


@pytest.fixture(scope="module")
def local():
    """A copy whose vision tower is local: each token depends on its own pixels only."""
    bundle = tiny_llava_next()
    assert localise_vision_tower(bundle.model.model.vision_tower) > 0
    return bundle


@pytest.fixture(scope="module")
def prepared(next_bundle, image):
    return next_bundle.adapter.prepare(next_bundle, image, PROMPT)


def test_visual_positions_are_the_processors_expansion_of_the_image_token(next_bundle, prepared, image):
    processor = next_bundle.processor
    expected = processor._get_number_of_features(image.height, image.width, NEXT_SIZE, NEXT_SIZE) - 1  # no CLS
    assert len(prepared.visual_positions) == expected == 16 + 4 * 8 + 4  # base 4×4, 1×2 tiles unpadded + newlines
    assert torch.equal(prepared.visual_positions, replaced_positions(next_bundle, prepared.inputs))


def test_every_token_is_drawn_tiles_newlines_and_base_view(prepared):
    # the 1 × 2 tiles' 4 × 8 tokens, each row's newline in the next column, a gap, the 4 × 4 base view
    assert prepared.grid == (4, 14) and prepared.image.dtype == np.uint8
    cells = prepared.cells
    assert sorted(cells[cells >= 0].tolist()) == list(range(52))
    assert cells[:, 10:].ravel().tolist() == list(range(16))  # the base view comes first in the prompt
    assert cells[0, :9].tolist() == list(range(16, 25)) and cells[:, 8].tolist() == [24, 33, 42, 51]  # newlines
    assert (cells[:, 9] == -1).all()
    views = {view["name"]: view["box"] for view in prepared.views}
    assert views == {"whole image (tiles in place)": [0, 0, 4, 14], "high-resolution tiles": [0, 0, 4, 8],
                     "base view": [0, 10, 4, 14]}


def test_shown_views_are_what_the_model_saw(prepared, image):
    pitch = prepared.image.shape[0] // 4
    base = np.array(image.resize((4 * pitch, 4 * pitch), Image.Resampling.BICUBIC)).astype(int)
    assert np.abs(prepared.image[:, 10 * pitch:].astype(int) - base).mean() < 2
    assert np.abs(prepared.image[:, :8 * pitch].astype(int) - np.array(image)).mean() < 2  # the tiles: the image
    assert (prepared.image[:, 8 * pitch:9 * pitch] == 64).all()  # the newline column


@pytest.mark.parametrize("view, cols", [("base view", 4), ("high-resolution tiles", 8)])
@pytest.mark.parametrize("row, col", [(0, 3), (3, 0), (2, 1)])
def test_each_token_sees_its_own_place_in_every_view(local, image, view, cols, row, col):
    assert most_changed_grid_cell(local, image, PROMPT, row, col, view) == row * cols + col


def test_a_padded_image_draws_only_the_rows_the_model_keeps(local):
    photo = noise_image(48, 64)  # 4:3, fitted into the 64 × 64 pinpoint and padded above and below
    prepared = local.adapter.prepare(local, photo, PROMPT)
    box = {view["name"]: view["box"] for view in prepared.views}["high-resolution tiles"]
    assert box == [0, 0, 6, 8]  # 8 × 8 tokens, 6 rows kept
    assert most_changed_grid_cell(local, photo, PROMPT, 5, 2, "high-resolution tiles") == 5 * 8 + 2


def test_hook_with_p_zero_equals_eager_and_only_text_attention_is_hooked(next_bundle, prepared):
    check_p_zero_hook_equals_eager(next_bundle, prepared, "LlamaAttention")
    assert next_bundle.model.config.vision_config._attn_implementation == "eager"


def test_hook_is_exact_through_generate_decode_steps(next_bundle, prepared):
    check_p_zero_hook_exact_through_generate(next_bundle, prepared)


def test_var_changes_the_answer_logits(next_bundle, prepared):
    check_var_changes_logits_after_the_image_only(next_bundle, prepared)


def test_generate_traces_every_visual_token(next_bundle, image):
    trace = generate(next_bundle, image, PROMPT, config=VARConfig(p=0.5, tau=1.0), max_new_tokens=3)
    layers, heads = next_bundle.num_layers, next_bundle.num_heads
    queries = len(trace.query_positions)
    assert trace.grid == (4, 14) and trace.attn_to_visual.shape == (layers, heads, queries, 52)
    assert len(trace.visual_positions) == 52 and queries == trace.n_prompt - 3 - 52 + 2
    assert trace.phi.shape == (layers, trace.n_prompt)
    assert trace.attn_to_visual_raw.shape == trace.attn_to_visual.shape
