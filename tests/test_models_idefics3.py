"""Idefics3 / SmolVLM adapter on tiny random models: 2 × 2 split tiles + the global image."""

import numpy as np
import pytest
import torch
from PIL import Image

from tests.tiny_models import (IDEFICS_TILE, check_p_zero_hook_equals_eager, check_p_zero_hook_exact_through_generate,
                               check_var_changes_logits_after_the_image_only, localise_vision_tower,
                               most_changed_grid_cell, noise_image, replaced_positions, tiny_idefics3)
from var_core.config import VARConfig
from var_core.run import generate

PROMPT = "what colour is the square ?"
PER_FRAME = 16


@pytest.fixture(scope="module", params=["idefics3", "smolvlm"])
def family(request):
    return request.param


@pytest.fixture(scope="module")
def idefics(family):
    return tiny_idefics3(smolvlm=family == "smolvlm")


@pytest.fixture(scope="module")
def image():
    return noise_image(2 * IDEFICS_TILE, 2 * IDEFICS_TILE)  # kept at 64 px: 2 × 2 tiles + global image


@pytest.fixture(scope="module")
def local(family):
    """A copy whose vision tower is local: each token depends on its own pixels only."""
    bundle = tiny_idefics3(smolvlm=family == "smolvlm")
    assert localise_vision_tower(bundle.model.model.vision_model) > 0
    return bundle


@pytest.fixture(scope="module")
def prepared(idefics, image):
    return idefics.adapter.prepare(idefics, image, PROMPT)


def test_visual_positions_are_the_processors_expansion_of_the_image_token(idefics, prepared):
    ids = prepared.inputs["input_ids"][0]
    tokens = idefics.processor.tokenizer.convert_ids_to_tokens(ids)
    assert prepared.inputs["pixel_values"].shape[1] == 5
    assert len(prepared.visual_positions) == 5 * PER_FRAME
    starts = [int(p) for p in prepared.visual_positions if tokens[p - 1] != "<image>"]
    assert [tokens[p - 1] for p in starts] == ["<row_1_col_1>", "<row_1_col_2>", "<row_2_col_1>", "<row_2_col_2>",
                                              "<global-img>"]
    assert torch.equal(prepared.visual_positions, replaced_positions(idefics, prepared.inputs))


def test_every_token_is_drawn_the_tiles_in_place_and_the_global_image_beside_them(prepared, image):
    # 2 × 2 tiles of 4 × 4 tokens, a gap column, the 4 × 4 global image (the last frame's tokens)
    assert prepared.grid == (8, 13)
    assert sorted(prepared.cells[prepared.cells >= 0].tolist()) == list(range(5 * PER_FRAME))
    views = {view["name"]: view["box"] for view in prepared.views}
    assert views["all tiles"] == [0, 0, 8, 8] and views["global image"] == [0, 9, 4, 13]
    assert prepared.cells[4, 0] == 2 * PER_FRAME and prepared.cells[0, 9] == 4 * PER_FRAME  # tile 2,1; global
    pitch = prepared.image.shape[0] // 8
    overview = np.array(image.resize((4 * pitch, 4 * pitch), Image.Resampling.LANCZOS)).astype(int)
    assert np.abs(prepared.image[:4 * pitch, 9 * pitch:13 * pitch].astype(int) - overview).mean() < 4


@pytest.mark.parametrize("view, side", [("global image", 4), ("all tiles", 8)])
@pytest.mark.parametrize("row, col", [(0, 3), (3, 0), (1, 2)])
def test_each_token_sees_its_own_place_in_every_view(local, image, view, side, row, col):
    assert most_changed_grid_cell(local, image, PROMPT, row, col, view) == row * side + col


def test_hook_with_p_zero_equals_eager_and_only_text_attention_is_hooked(idefics, prepared):
    check_p_zero_hook_equals_eager(idefics, prepared, "LlamaAttention")


def test_hook_is_exact_through_generate_decode_steps(idefics, prepared):
    check_p_zero_hook_exact_through_generate(idefics, prepared)


def test_var_changes_logits_after_the_image_only(idefics, prepared):
    check_var_changes_logits_after_the_image_only(idefics, prepared)


def test_generate_traces_every_visual_token(idefics, image):
    trace = generate(idefics, image, PROMPT, config=VARConfig(p=0.5, tau=1.0), max_new_tokens=3)
    layers, heads = idefics.num_layers, idefics.num_heads
    queries = len(trace.query_positions)
    assert trace.grid == (8, 13) and trace.attn_to_visual.shape == (layers, heads, queries, 5 * PER_FRAME)
    assert len(trace.visual_positions) == 5 * PER_FRAME and trace.phi.shape == (layers, trace.n_prompt)
