"""The visual-token budget: each family's processor size controls keep a large image within it, through the real
processor code of tiny models; a budget below what the family needs is refused."""

import pytest
import torch

from tests.tiny_llava import tiny_llava
from tests.tiny_models import (IDEFICS_TILE, noise_image, replaced_positions, tiny_idefics3, tiny_internvl,
                               tiny_llava_next, tiny_qwen2_5_vl, tiny_qwen2_vl)
from var_core.budget import DEFAULT_VISUAL_TOKEN_BUDGET, ENV_VAR, visual_token_budget

PROMPT = "what colour is the square ?"
HUB_QWEN_MAX_PIXELS = 12_845_056  # Qwen2-VL's hub preprocessor_config


@pytest.fixture(scope="module")
def large():
    return noise_image(1536, 2048)


def tokens(bundle, image, budget=None) -> int:
    """Visual tokens of `image` through the adapter at `budget` (None: the default)."""
    bundle.extra["visual_token_budget"] = budget
    try:
        return len(bundle.adapter.prepare(bundle, image, PROMPT).visual_positions)
    finally:
        bundle.extra.pop("visual_token_budget")


@pytest.fixture(scope="module", params=["qwen2_vl", "qwen2_5_vl"])
def qwen(request):
    """A tiny Qwen whose processor accepts as many pixels as the hub's (one token per 8 × 8 px here)."""
    bundle = {"qwen2_vl": tiny_qwen2_vl, "qwen2_5_vl": tiny_qwen2_5_vl}[request.param]()
    bundle.processor.image_processor.size["longest_edge"] = HUB_QWEN_MAX_PIXELS
    return bundle


def test_budget_comes_from_the_bundle_then_the_environment_then_the_family(monkeypatch):
    bundle = tiny_llava_next()
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert visual_token_budget(bundle) == 2928 and visual_token_budget(tiny_llava()) == DEFAULT_VISUAL_TOKEN_BUDGET
    monkeypatch.setenv(ENV_VAR, "700")
    assert visual_token_budget(bundle) == 700
    bundle.extra["visual_token_budget"] = 90
    assert visual_token_budget(bundle) == 90


@pytest.mark.parametrize("value", ["many", 0, -5, 2.5])
def test_a_budget_that_is_not_a_positive_whole_number_is_refused(value):
    bundle = tiny_llava()
    bundle.extra["visual_token_budget"] = value
    with pytest.raises(ValueError, match="must be a positive whole number"):
        visual_token_budget(bundle)


def test_qwen_default_budget_caps_a_large_image(qwen, large):
    processor_alone = qwen.processor.image_processor(images=[large])["image_grid_thw"][0].prod() // 4
    assert processor_alone > 40_000  # the hub pixel cap alone: ≈ 49k tokens at 8 px per token
    assert 1_100 < tokens(qwen, large) <= DEFAULT_VISUAL_TOKEN_BUDGET


def test_qwen_smaller_budget_gives_fewer_tokens_with_the_aspect_ratio_kept(qwen, large):
    qwen.extra["visual_token_budget"] = 100
    try:
        prepared = qwen.adapter.prepare(qwen, large, PROMPT)
    finally:
        qwen.extra.pop("visual_token_budget")
    rows, cols = prepared.grid
    assert 80 < rows * cols <= 100 and abs(cols / rows - 4 / 3) < 0.2


def test_qwen_budget_below_its_minimum_is_refused(qwen, large):
    with pytest.raises(ValueError, match="budget 3 is below the 4 visual tokens"):
        tokens(qwen, large, budget=3)


@pytest.fixture(scope="module")
def idefics():
    """A tiny Idefics3 whose processor resizes to a longest edge of 8 tiles (≈ the 2048 px of SmolVLM's 4 × 512)."""
    bundle = tiny_idefics3()
    bundle.processor.image_processor.size["longest_edge"] = 8 * IDEFICS_TILE
    return bundle


def test_idefics3_budget_shrinks_the_longest_edge(idefics, large):
    full = tokens(idefics, large)
    assert full == (8 * 6 + 1) * 16  # 8 × 6 tiles + the global image, 16 tokens each: under the default budget
    assert (4 * 3 + 1) * 16 == tokens(idefics, large, budget=300) < full
    assert tokens(idefics, large, budget=40) == 16  # one frame: the global image alone


def test_idefics3_budget_below_one_frame_is_refused(idefics, large):
    with pytest.raises(ValueError, match="budget 10 is below the 16 visual tokens of tiny-idefics3's global image"):
        tokens(idefics, large, budget=10)


@pytest.fixture(scope="module")
def next_bundle():
    return tiny_llava_next()


def test_llava_next_budget_picks_a_smaller_pinpoint_the_model_agrees_with(next_bundle, large):
    assert tokens(next_bundle, large) == 16 + 6 * 8 + 6  # 64 × 64 pinpoint: base + unpadded 6 × 8 + newlines
    next_bundle.extra["visual_token_budget"] = 50
    try:
        prepared = next_bundle.adapter.prepare(next_bundle, large, PROMPT)
    finally:
        next_bundle.extra.pop("visual_token_budget")
    assert len(prepared.visual_positions) == 16 + 4 * 6 + 4  # 32 × 64 pinpoint: 4 rows × 6 unpadded cols
    assert torch.equal(prepared.visual_positions, replaced_positions(next_bundle, prepared.inputs))


def test_llava_next_budget_below_its_smallest_layout_is_refused(next_bundle, large):
    with pytest.raises(ValueError, match="budget 40 is below the 44 visual tokens tiny-llava-next needs"):
        tokens(next_bundle, large, budget=40)


def test_internvl_budget_caps_the_tiles(large):
    bundle = tiny_internvl()
    assert tokens(bundle, large) == (4 + 1) * 16  # 4 tiles + thumbnail
    assert tokens(bundle, large, budget=40) == 16  # one tile, no thumbnail
    with pytest.raises(ValueError, match="budget 10 is below the 16 visual tokens of one tiny-internvl tile"):
        tokens(bundle, large, budget=10)


def test_fixed_size_llava_refuses_a_budget_below_its_tokens(large):
    bundle = tiny_llava()
    assert tokens(bundle, large) == 16
    with pytest.raises(ValueError, match="budget 10 is below the 16 visual tokens that tiny-llava always gives"):
        tokens(bundle, large, budget=10)
