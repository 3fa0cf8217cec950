"""The "paper" preset: LLaVA-1.5 as the VAR authors ran it (pad to square with the mean colour, vicuna_v1 prompt)."""

import numpy as np
import pytest
import torch
from PIL import Image

from tests.tiny_models import replaced_positions, tiny_qwen2_vl, tiny_vicuna_llava
from var_core.config import VARConfig
from var_core.models.catalog import DEFAULT_MODEL_ID, ModelLoadError, load_model, wrap
from var_core.images import expand2square
from var_core.models.common import mean_colour
from var_core.models.llava import VICUNA_V1_SYSTEM, LlavaAdapter
from var_core.run import generate

PROMPT = "what colour is the square ?"
RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


@pytest.fixture(scope="module")
def llava():
    return tiny_vicuna_llava()


def banded(width: int = 320, height: int = 240, band: int = 30) -> Image.Image:
    """Green, with a red band on the left edge and a blue band on the right: narrower than the hub crop cuts."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[:] = GREEN
    pixels[:, :band], pixels[:, -band:] = RED, BLUE
    return Image.fromarray(pixels)


def prepared(bundle, preset, image=None):
    bundle.extra["preset"] = preset
    try:
        return bundle.adapter.prepare(bundle, image or banded(), PROMPT)
    finally:
        bundle.extra.pop("preset")


def test_hub_preset_crops_the_edges_away(llava):
    image = prepared(llava, "hub").image.astype(int)
    assert image[:, 0, 0].max() < 100 and image[:, -1, 2].max() < 100  # no red on the left, no blue on the right


def test_paper_preset_pads_so_both_edges_reach_the_model(llava):
    result = prepared(llava, "paper")
    image = result.image.astype(int)
    middle = image.shape[0] // 2
    assert image[middle, 0, 0] > 200 and image[middle, -1, 2] > 200  # red left edge, blue right edge
    assert np.abs(image[0, image.shape[1] // 2] - mean_colour(llava.processor.image_processor)).max() <= 3
    assert result.seen["preset"] == "paper" and result.seen["cropped"] is None
    assert result.seen["padded"] == ("padded to a 320×320 square with the mean colour (122, 116, 104), "
                                     "adding 40 px above and 40 px below")


def test_expand2square_centres_the_image_as_llava_does():
    square = expand2square(banded(30, 10, band=5), (1, 2, 3))
    pixels = np.array(square)
    assert square.size == (30, 30) and (pixels[:10] == (1, 2, 3)).all() and (pixels[20:] == (1, 2, 3)).all()
    assert (pixels[10:20, :5] == RED).all() and (pixels[10:20, 5:25] == GREEN).all()


def test_paper_prompt_is_vicuna_v1_and_the_image_tokens_are_found(llava):
    result = prepared(llava, "paper")
    ids = result.inputs["input_ids"][0]
    tokenizer = llava.tokenizer
    system = tokenizer(VICUNA_V1_SYSTEM, add_special_tokens=False)["input_ids"]
    assert ids[:len(system)].tolist() == system and tokenizer.unk_token_id not in ids.tolist()
    tokens = tokenizer.convert_ids_to_tokens(ids.tolist())
    start = int(result.visual_positions[0])
    assert tokens[start - 2:start] == ["USER", ":"] and tokens[-2:] == ["ASSISTANT", ":"]
    assert len(result.visual_positions) == 16
    assert torch.equal(result.visual_positions, replaced_positions(llava, result.inputs))


def test_hub_preset_keeps_the_processors_chat_template(llava):
    ids = prepared(llava, "hub").inputs["input_ids"][0].tolist()
    assert llava.tokenizer.convert_ids_to_tokens(ids)[:3] == ["<s>", "USER", ":"]


def test_a_paper_run_says_so_in_the_trace(llava):
    llava.extra["preset"] = "paper"
    try:
        trace = generate(llava, banded(), PROMPT, config=VARConfig(p=0.5, tau=1.0), max_new_tokens=2)
    finally:
        llava.extra.pop("preset")
    assert trace.settings["seen"]["preset"] == "paper"


def test_paper_is_refused_outside_llava_1_5():
    qwen = tiny_qwen2_vl()
    qwen.extra["preset"] = "paper"
    with pytest.raises(ValueError, match='"paper" preset .* LLaVA-1.5 only: tiny-qwen2-vl is a qwen2_vl model'):
        qwen.adapter.prepare(qwen, banded(), PROMPT)
    with pytest.raises(ValueError, match="LLaVA-1.5 only"):
        wrap(qwen.model, qwen.processor, sink_dims=[5], name="tiny-qwen2-vl", preset="paper")


def test_paper_is_refused_for_a_llava_trained_with_its_own_template(llava):
    own = type(llava)(model=llava.model, processor=llava.processor, name="own-template", backbone=llava.backbone,
                      adapter=LlavaAdapter(paper_preset=False), extra={"preset": "paper"})
    with pytest.raises(ValueError, match="own-template was trained with its own chat template"):
        own.adapter.prepare(own, banded(), PROMPT)


def test_unknown_presets_are_refused(llava):
    llava.extra["preset"] = "authors"
    try:
        with pytest.raises(ValueError, match=r"unknown preset 'authors'; choose one of \['hub', 'paper'\]"):
            llava.adapter.prepare(llava, banded(), PROMPT)
    finally:
        llava.extra.pop("preset")


def test_load_model_refuses_paper_for_the_default_model_before_loading(monkeypatch):
    import var_core.models.default as default

    monkeypatch.setattr(default, "load_default_model", lambda: pytest.fail("must not load"))
    with pytest.raises(ModelLoadError, match="does not apply to the default model"):
        load_model(DEFAULT_MODEL_ID, preset="paper")


def test_wrap_records_the_preset(llava):
    bundle = wrap(llava.model, llava.processor, sink_dims=[5], name="tiny-vicuna", preset="paper")
    assert bundle.extra["preset"] == "paper"
    assert bundle.adapter.prepare(bundle, banded(), PROMPT).seen["preset"] == "paper"
