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


def test_every_token_is_drawn_the_tiles_in_place_and_the_thumbnail_beside_them(prepared, image):
    # 2 × 2 tiles of 4 × 4 tokens, a gap column, the 4 × 4 thumbnail (the last tile's tokens)
    assert prepared.grid == (8, 13)
    assert sorted(prepared.cells[prepared.cells >= 0].tolist()) == list(range(5 * PER_TILE))
    views = {view["name"]: view["box"] for view in prepared.views}
    assert views["all tiles"] == [0, 0, 8, 8] and views["thumbnail"] == [0, 9, 4, 13]
    assert views["tile 1,2"] == [0, 4, 4, 8]  # tiles are cut row by row: the second tile is top right
    assert prepared.cells[0, 4] == PER_TILE and prepared.cells[0, 9] == 4 * PER_TILE
    pitch = prepared.image.shape[0] // 8
    thumbnail = prepared.image[:4 * pitch, 9 * pitch:13 * pitch].astype(int)
    expected = np.array(image.resize((4 * pitch, 4 * pitch), Image.Resampling.BICUBIC)).astype(int)
    assert np.abs(thumbnail - expected).mean() < 4
    tiles = prepared.image[:, :8 * pitch].astype(int)  # the tiles put back together are the image again
    assert np.abs(tiles - np.array(image.resize((8 * pitch, 8 * pitch), Image.Resampling.BICUBIC))).mean() < 4


def test_an_image_of_one_tile_has_no_thumbnail_and_is_its_own_grid(internvl):
    single = internvl.adapter.prepare(internvl, noise_image(INTERNVL_TILE, INTERNVL_TILE), PROMPT)
    assert single.inputs["pixel_values"].shape[0] == 1
    assert single.grid == (4, 4) and single.cells.ravel().tolist() == list(range(PER_TILE))


@pytest.mark.parametrize("view, side", [("thumbnail", 4), ("all tiles", 8)])
@pytest.mark.parametrize("row, col", [(0, 3), (3, 0), (1, 2)])
def test_each_token_sees_its_own_place_in_every_view(local, image, view, side, row, col):
    assert most_changed_grid_cell(local, image, PROMPT, row, col, view) == row * side + col


def test_a_wide_image_has_its_tiles_side_by_side(local):
    wide = noise_image(INTERNVL_TILE, 2 * INTERNVL_TILE)  # 1 row × 2 tiles + thumbnail
    prepared = local.adapter.prepare(local, wide, PROMPT)
    assert {view["name"]: view["box"] for view in prepared.views}["all tiles"] == [0, 0, 4, 8]
    assert most_changed_grid_cell(local, wide, PROMPT, 2, 6, "all tiles") == 2 * 8 + 6


def test_hook_with_p_zero_equals_eager_and_only_text_attention_is_hooked(internvl, prepared):
    check_p_zero_hook_equals_eager(internvl, prepared, "Qwen2Attention")


def test_hook_is_exact_through_generate_decode_steps(internvl, prepared):
    check_p_zero_hook_exact_through_generate(internvl, prepared)


def test_var_changes_logits_after_the_image_only(internvl, prepared):
    check_var_changes_logits_after_the_image_only(internvl, prepared)


def test_generate_traces_every_visual_token(internvl, image):
    trace = generate(internvl, image, PROMPT, config=VARConfig(p=0.5, tau=1.0), max_new_tokens=3)
    layers, heads = internvl.num_layers, internvl.num_heads
    queries = len(trace.query_positions)
    assert trace.grid == (8, 13) and trace.attn_to_visual.shape == (layers, heads, queries, 5 * PER_TILE)
    assert len(trace.visual_positions) == 5 * PER_TILE and trace.phi.shape == (layers, trace.n_prompt)
    assert [view["name"] for view in trace.view_list][:2] == ["whole image (tiles in place)", "tile 1,1"]


def test_a_saved_tiled_analysis_reopens_with_its_layout_and_a_broken_layout_is_refused(internvl, image, tmp_path):
    from var_core.saved import reopen

    runs = {"baseline": generate(internvl, image, PROMPT, max_new_tokens=2),
            "var": generate(internvl, image, PROMPT, config=VARConfig(p=0.5, tau=1.0), max_new_tokens=2)}
    paths = [trace.save(tmp_path / f"trace_{name}.npz") for name, trace in runs.items()]
    reopened = reopen(paths).analysis
    assert np.array_equal(reopened.var.cells, runs["var"].cells) and reopened.var.views == runs["var"].views
    broken = runs["var"]
    broken.cells = broken.cells.copy()
    broken.cells[0, 0] = broken.cells[0, 1]  # token 0 no longer drawn, token 1 twice
    with pytest.raises(ValueError, match="grid"):
        reopen([paths[0], broken.save(tmp_path / "trace_var.npz")])
