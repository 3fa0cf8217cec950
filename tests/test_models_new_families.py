"""The families added on the generic path, on tiny random models through their real transformers classes: Qwen3-VL
(dense and MoE), Gemma 3, SmolVLM2 with SmolVLM's own processor, InternVL3.5-hf (Qwen3 dense and MoE LMs),
LLaVA-OneVision (refused by the hook today: see its test), Mistral-3 and Pixtral-12B's LLaVA (PixtralProcessor on
its PIL image processor, no torchvision)."""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import Qwen3Config, Qwen3MoeConfig

from tests.tiny_families import (localise_pixtral_tower, tiny_gemma3, tiny_llava_onevision, tiny_mistral3,
                                  tiny_pixtral_llava, tiny_qwen3_vl, tiny_smolvlm2)
from tests.tiny_models import (check_p_zero_hook_equals_eager, check_p_zero_hook_exact_through_generate,
                               check_var_changes_logits_after_the_image_only, localise_vision_tower,
                               most_changed_grid_cell, noise_image, replaced_positions, tiny_internvl)
from var_core.config import VARConfig
from var_core.run import generate

PROMPT = "what colour is the square ?"


@dataclass(frozen=True)
class Family:
    """One tiny family: how to build it, the image it gets, what the processor must make of it."""

    build: Callable
    size: tuple[int, int]  # (height, width) of the noise image
    grid: tuple[int, int]  # the canvas of token cells: every visual token drawn (tiled models: tiles, then views)
    visual: int  # every visual token (grid + tiles + newlines)
    before: str  # the text token just before the first visual token
    attention: str  # the LM's attention class: the only one the hook may see
    tower: str  # attribute of model.model holding the vision tower
    localise: Callable = localise_vision_tower  # makes each tower output depend on its own pixels only
    views: tuple = ((None, None),)  # (view, (rows, cols)) each covering the whole image; None: the whole canvas

    def view_shapes(self) -> list[tuple[str | None, tuple[int, int]]]:
        return [(view, shape or self.grid) for view, shape in self.views]


TILED = (("all tiles", (8, 8)), ("tile 2,1", (4, 4)))  # 2 × 2 tiles of 4 × 4 tokens

FAMILIES = {
    "qwen3_vl": Family(tiny_qwen3_vl, (32, 48), (4, 6), 24, "<|vision_start|>", "Qwen3VLTextAttention", "visual"),
    "qwen3_vl_moe": Family(lambda: tiny_qwen3_vl(moe=True), (32, 48), (4, 6), 24, "<|vision_start|>",
                           "Qwen3VLMoeTextAttention", "visual"),
    "gemma3": Family(tiny_gemma3, (40, 24), (4, 4), 16, "<start_of_image>", "Gemma3Attention", "vision_tower"),
    # tiled: 2 × 2 tiles of 4 × 4 tokens in place, a gap column, the 4 × 4 global image / thumbnail
    "smolvlm2": Family(tiny_smolvlm2, (64, 64), (8, 13), 5 * 16, "<row_1_col_1>", "LlamaAttention", "vision_model",
                       views=(("global image", (4, 4)), *TILED)),
    "internvl3_5": Family(lambda: tiny_internvl(text_config_class=Qwen3Config, head_dim=16), (64, 64), (8, 13),
                          5 * 16, "<img>", "Qwen3Attention", "vision_tower", views=(("thumbnail", (4, 4)), *TILED)),
    "internvl3_5_moe": Family(lambda: tiny_internvl(text_config_class=Qwen3MoeConfig, head_dim=16, num_experts=4,
                                                    num_experts_per_tok=2, moe_intermediate_size=32),
                              (64, 64), (8, 13), 5 * 16, "<img>", "Qwen3MoeAttention", "vision_tower",
                              views=(("thumbnail", (4, 4)), *TILED)),
    # LLaVA-OneVision: base view 4 × 4 first, then 1 × 2 tiles (4 × 8 tokens) with a newline per row; drawn: the
    # tiles, their newline column, a gap, the base view
    "llava_onevision": Family(tiny_llava_onevision, (32, 64), (4, 14), 16 + 32 + 4, ":", "Qwen2Attention",
                              "vision_tower", views=(("base view", (4, 4)), ("high-resolution tiles", (4, 8)))),
    # Mistral-3: 40 × 60 resized to 32 × 48 (longest edge 48), 8-px merged tokens → 4 rows of 6 [IMG] (+ breaks)
    "mistral3": Family(tiny_mistral3, (40, 60), (4, 6), 24, "[INST]", "MistralAttention", "vision_tower",
                       localise_pixtral_tower),
    # Pixtral-12B's LLaVA: 44 × 28 not enlarged, sides rounded up to 8-px patches (48 × 32) → 6 rows of 4
    "pixtral_llava": Family(tiny_pixtral_llava, (44, 28), (6, 4), 24, "[INST]", "MistralAttention", "vision_tower",
                            localise_pixtral_tower),
}


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(request):
    return FAMILIES[request.param]


@pytest.fixture(scope="module")
def tiny(family):
    return family.build()


@pytest.fixture(scope="module")
def image(family):
    return noise_image(*family.size)


@pytest.fixture(scope="module")
def prepared(tiny, image):
    return tiny.adapter.prepare(tiny, image, PROMPT)


def check_positions_and_grid(tiny, family: Family, prepared) -> None:
    """Visual positions = where the model put image features = the processor's expansion; the grid's size."""
    ids = prepared.inputs["input_ids"][0]
    tokens = tiny.processor.tokenizer.convert_ids_to_tokens(ids)
    assert len(prepared.visual_positions) == family.visual and prepared.grid == family.grid
    assert tokens[prepared.visual_positions[0] - 1] == family.before
    assert torch.equal(prepared.visual_positions, replaced_positions(tiny, prepared.inputs))
    drawn = prepared.cells[prepared.cells >= 0]  # every visual token, once
    assert sorted(drawn.tolist()) == list(range(family.visual)) and prepared.image.dtype.name == "uint8"
    views = {view["name"]: view["box"] for view in prepared.views}
    for view, (rows, cols) in family.view_shapes():
        if view is not None:
            top, left, bottom, right = views[view]
            assert (bottom - top, right - left) == (rows, cols), view


def check_cells(family: Family) -> None:
    """With a local vision tower, perturbing cell (r, c) of the image, divided like a view, moves the token drawn at
    that view's cell r · cols + c most: in every view, the tokens lie where they are drawn."""
    local = family.build()
    assert family.localise(getattr(local.model.model, family.tower)) > 0
    image = noise_image(*family.size)
    for view, (rows, cols) in family.view_shapes():
        if view and view.startswith("tile "):  # one tile covers a quarter: perturb inside it, at its own cells
            continue
        for row, col in [(0, cols - 1), (rows - 1, 0), (rows // 2, cols // 2)]:
            assert most_changed_grid_cell(local, image, PROMPT, row, col, view) == row * cols + col, (view, row, col)


def test_visual_positions_are_the_processors_expansion_and_the_grid_is_whole(tiny, family, prepared):
    check_positions_and_grid(tiny, family, prepared)


def test_each_grid_token_sees_its_own_cell(family):
    check_cells(family)


def test_hook_with_p_zero_equals_eager_and_only_text_attention_is_hooked(tiny, family, prepared):
    check_p_zero_hook_equals_eager(tiny, prepared, family.attention)


def test_hook_is_exact_through_generate_decode_steps(tiny, prepared):
    check_p_zero_hook_exact_through_generate(tiny, prepared)


def test_var_changes_logits_after_the_image_only(tiny, prepared):
    check_var_changes_logits_after_the_image_only(tiny, prepared)


def test_generate_traces_the_grid(tiny, family, image):
    trace = generate(tiny, image, PROMPT, config=VARConfig(p=0.5, tau=1.0), max_new_tokens=3)
    assert trace.grid == family.grid and len(trace.visual_positions) == family.visual
    assert trace.attn_to_visual.shape == (tiny.num_layers, tiny.num_heads, len(trace.query_positions), family.visual)
    assert trace.phi.shape == (tiny.num_layers, trace.n_prompt) and len(trace.tokens) == trace.n_prompt + 3


def test_gemma3_draws_the_whole_image_squashed_to_its_square_input():
    tiny = tiny_gemma3()
    prepared = tiny.adapter.prepare(tiny, noise_image(40, 24), PROMPT)
    assert prepared.image.shape == (32, 32, 3) and prepared.seen["original_size"] == [24, 40]
    assert prepared.seen["resized"] and prepared.cells.ravel().tolist() == list(range(16))


def test_llava_onevision_draws_its_base_view_first():
    """OneVision forwards `logits_to_keep` down to every attention call (harmless there: the LM head uses it), so
    the hook lets it through; the 4 × 4 base view's tokens come before the tiles'."""
    onevision = FAMILIES["llava_onevision"]
    tiny = onevision.build()
    prepared = tiny.adapter.prepare(tiny, noise_image(*onevision.size), PROMPT)
    top, left, bottom, right = {view["name"]: view["box"] for view in prepared.views}["base view"]
    assert prepared.cells[top:bottom, left:right].ravel().tolist() == list(range(16))  # base view first, no CLS
    assert prepared.cells[:, 8].tolist() == [24, 33, 42, 51]  # each tile row closed by its newline token


def test_llava_onevision_draws_shrunk_tile_features_over_the_region_they_cover():
    """Past `anyres_max_N` the model bilinearly shrinks the tile features: here (anyres_max_1) the 4 × 8 map becomes
    2 × 5 + newlines; the picture follows the model's own packing, and each shrunk token still sees its place."""
    tiny = FAMILIES["llava_onevision"].build()
    tiny.model.config.vision_aspect_ratio = tiny.processor.vision_aspect_ratio = "anyres_max_1"
    image = noise_image(32, 64)
    prepared = tiny.adapter.prepare(tiny, image, PROMPT)
    assert len(prepared.visual_positions) == 16 + 2 * 6 == len(replaced_positions(tiny, prepared.inputs))
    assert {view["name"]: view["box"] for view in prepared.views}["high-resolution tiles"] == [0, 0, 2, 5]
    assert prepared.cells[:2, 5].tolist() == [21, 27]  # the newlines
    assert localise_vision_tower(tiny.model.model.vision_tower) > 0
    for row, col in [(0, 4), (1, 0), (1, 2)]:
        assert most_changed_grid_cell(tiny, image, PROMPT, row, col, "high-resolution tiles") == row * 5 + col


def test_gemma3_pan_and_scan_crops_are_drawn_in_place_beside_the_image():
    """With pan & scan on, a 1:3 image is cut into 3 crops side by side after the whole image's 16 tokens; the
    processor's own call defaults (off) do not override the image processor's setting."""
    tiny = tiny_gemma3(sliding_window=4096)
    image_processor = tiny.processor.image_processor
    image_processor.do_pan_and_scan, image_processor.pan_and_scan_min_crop_size = True, 8
    image_processor.pan_and_scan_max_num_crops, image_processor.pan_and_scan_min_ratio_to_activate = 4, 1.2
    tiny.extra["visual_token_budget"] = 64
    image = noise_image(24, 72)
    prepared = tiny.adapter.prepare(tiny, image, PROMPT)
    assert len(prepared.visual_positions) == 4 * 16 == len(replaced_positions(tiny, prepared.inputs))
    views = {view["name"]: view["box"] for view in prepared.views}
    assert views["all tiles"] == [0, 0, 4, 12] and views["original image"] == [0, 13, 4, 17]
    assert localise_vision_tower(tiny.model.model.vision_tower) > 0
    for row, col in [(0, 11), (3, 0), (2, 5)]:
        assert most_changed_grid_cell(tiny, image, PROMPT, row, col, "all tiles") == row * 12 + col


def test_a_prompt_that_could_outgrow_a_sliding_window_is_refused():
    """Past the window the cache drops the oldest keys and the hook would trace the wrong ones."""
    tiny = tiny_gemma3(sliding_window=64)
    with pytest.raises(ValueError, match="sliding window of 64 tokens"):
        tiny.adapter.prepare(tiny, noise_image(32, 32), PROMPT)


# ---------------------------------------------------------------- Mistral-3 / Pixtral
def test_pixtral_rows_are_closed_by_break_tokens_and_the_image_is_the_resized_one():
    """[IMG] × cols then [IMG_BREAK] per row, [IMG_END] after the last; the drawn image is the 32 × 48 resize."""
    tiny, image = tiny_mistral3(), noise_image(40, 60)
    prepared = tiny.adapter.prepare(tiny, image, PROMPT)
    tokens = tiny.processor.tokenizer.convert_ids_to_tokens(prepared.inputs["input_ids"][0])
    first = int(prepared.visual_positions[0])
    assert tokens[first:first + 4 * 7] == (["[IMG]"] * 6 + ["[IMG_BREAK]"]) * 3 + ["[IMG]"] * 6 + ["[IMG_END]"]
    assert prepared.image.shape == (32, 48, 3) and prepared.seen["input_size"] == [48, 32] and prepared.seen["resized"]
    resized = np.array(image.resize((48, 32), Image.BICUBIC)).astype(int)
    assert np.abs(prepared.image.astype(int) - resized).max() <= 2  # what the model saw, up to float rounding


def test_mistral3_budget_caps_the_longest_edge():
    """Budget 6: the longest edge drops from 48 to 24 px (16 × 24: 2 × 3 tokens), keeping the aspect ratio."""
    tiny = tiny_mistral3()
    tiny.extra["visual_token_budget"] = 6
    prepared = tiny.adapter.prepare(tiny, noise_image(40, 60), PROMPT)
    assert prepared.grid == (2, 3) and len(prepared.visual_positions) == 6
    assert prepared.seen["input_size"] == [24, 16] and prepared.seen["visual_token_budget"] == 6
    tiny.extra["visual_token_budget"] = 1280  # the processor's own cap (48 px) is never exceeded
    assert tiny.adapter.prepare(tiny, noise_image(120, 120), PROMPT).grid == (6, 6)


def test_mistral3_refuses_a_budget_below_one_row_and_an_image_too_thin():
    tiny = tiny_mistral3()
    tiny.extra["visual_token_budget"] = 3  # 2 × 60 px: one row, at least 4 columns before the row vanishes
    with pytest.raises(ValueError, match="below the 4 visual tokens"):
        tiny.adapter.prepare(tiny, noise_image(2, 60), PROMPT)
    tiny.extra["visual_token_budget"] = 4
    assert tiny.adapter.prepare(tiny, noise_image(2, 60), PROMPT).grid == (1, 4)
    with pytest.raises(ValueError, match="too thin"):
        tiny.adapter.prepare(tiny, noise_image(1, 60), PROMPT)


def test_mistral_sliding_window_goes_through_the_hook_and_is_checked():
    """MistralAttention passes `sliding_window` to its attention function: the hook takes it (the window is in the
    mask) when the prompt and the longest answer fit, and a window they could outgrow is refused."""
    wide = tiny_mistral3(sliding_window=600)
    check_p_zero_hook_equals_eager(wide, wide.adapter.prepare(wide, noise_image(40, 60), PROMPT), "MistralAttention")
    narrow = tiny_mistral3(sliding_window=64)
    with pytest.raises(ValueError, match="sliding window of 64 tokens"):
        narrow.adapter.prepare(narrow, noise_image(40, 60), PROMPT)


@pytest.mark.parametrize("build, family", [(tiny_mistral3, "mistral3"), (tiny_pixtral_llava, "pixtral")])
def test_the_loader_reads_saved_mistral3_and_pixtral_files_without_torchvision(build, family, tmp_path, monkeypatch):
    """Saved with save_pretrained and loaded back through the catalogue's loader: AutoProcessor cannot build
    PixtralProcessor without torchvision, the loader falls back to it on the PIL image processor; LLaVA with a
    Pixtral tower is the "pixtral" family, not LLaVA-1.5's square grid."""
    from var_core.models.catalog import family_of, load_model

    monkeypatch.setenv("VAR_CACHE_DIR", str(tmp_path / "cache"))
    original = build()
    original.model.save_pretrained(tmp_path / "model")
    original.processor.save_pretrained(tmp_path / "model")
    loaded = load_model(str(tmp_path / "model"), allow_any=True)
    assert family_of(loaded.model.config) == family and loaded.adapter.family == family
    assert type(loaded.processor).__name__ == "PixtralProcessor"
    assert type(loaded.processor.image_processor).__name__ == "PixtralImageProcessorPil"
    image = noise_image(40, 60)
    mine, theirs = loaded.adapter.prepare(loaded, image, PROMPT), original.adapter.prepare(original, image, PROMPT)
    assert torch.equal(mine.inputs["input_ids"], theirs.inputs["input_ids"]) and mine.grid == theirs.grid
    assert torch.equal(mine.visual_positions, theirs.visual_positions)


def test_mistral3_catalogue_entries():
    from var_core.models.catalog import CATALOG, adapter_for

    for model_id, family in [("mistralai/Mistral-Small-3.1-24B-Instruct-2503", "mistral3"),
                             ("mistral-community/pixtral-12b", "pixtral")]:
        assert CATALOG[model_id].family == family and adapter_for(family).family == family
