"""What the model saw (`PreparedInputs.seen`, `describe_seen`): sizes, resize, crop and padding, from the
processors' settings, checked against the pixels that reach the model."""

import numpy as np
import pytest
from PIL import Image

from tests.tiny_llava import tiny_llava
from tests.tiny_models import noise_image, tiny_idefics3, tiny_internvl, tiny_llava_next, tiny_qwen2_vl
from var_core.images import prepare_image
from var_core.models.common import describe_seen
from var_core.models.llava import llava_seen

PROMPT = "what colour is the square ?"


def gradient(width: int, height: int, horizontal: bool) -> Image.Image:
    """Red encodes the column (horizontal) or the row: the model input's first pixel tells where the crop began."""
    ramp = np.linspace(0, 255, width if horizontal else height)
    red = np.broadcast_to(ramp[None, :] if horizontal else ramp[:, None], (height, width))
    return Image.fromarray(np.stack([red, np.zeros_like(red), np.zeros_like(red)], -1).round().astype(np.uint8))


def first_pixel_at(prepared, length: int, horizontal: bool) -> float:
    """Where, in px of the original image, the model input's first column (or row) came from."""
    height, width = prepared.image.shape[:2]
    pixel = prepared.image[height // 2, 0] if horizontal else prepared.image[0, width // 2]
    return pixel[0] / 255 * (length - 1)


@pytest.fixture(scope="module")
def llava():
    return tiny_llava()


def test_a_wide_image_is_cropped_left_and_right_by_what_the_text_says(llava):
    prepared = llava.adapter.prepare(llava, gradient(320, 240, horizontal=True), PROMPT)
    seen = prepared.seen
    assert seen["original_size"] == [320, 240] and seen["input_size"] == [32, 32] and seen["resized"]
    assert seen["cropped"] == ("centre-cropped to 32×32, cutting 38 px from the left and 38 px from the right of the "
                               "320×240 image (24% of it unseen)")
    assert seen["padded"] is None and seen["visual_tokens"] == 16 and seen["preset"] == "hub"
    assert 38 <= first_pixel_at(prepared, 320, horizontal=True) <= 38 + 320 / 32  # the first column begins at 38


def test_a_tall_image_is_cropped_top_and_bottom(llava):
    prepared = llava.adapter.prepare(llava, gradient(200, 900, horizontal=False), PROMPT)
    assert prepared.seen["cropped"] == ("centre-cropped to 32×32, cutting 350 px from the top and 350 px from the "
                                        "bottom of the 200×900 image (78% of it unseen)")
    assert 350 <= first_pixel_at(prepared, 900, horizontal=False) <= 350 + 900 / 32


def test_a_square_image_at_the_input_size_is_untouched(llava):
    seen = llava.adapter.prepare(llava, noise_image(32, 32), PROMPT).seen
    assert not seen["resized"] and seen["cropped"] is None and seen["padded"] is None
    assert describe_seen(seen) == "Model input 32×32 from 32×32: unchanged; 16 visual tokens (budget 1,280)."


def test_the_default_models_processor_centre_crops_too():
    from var_core.models import default

    processor = default.build_processor(default.cached_language_model())
    image = noise_image(480, 640)
    pixels = processor.image_processor(images=image, return_tensors="pt")["pixel_values"][0]
    seen = llava_seen(image, image, processor.image_processor, pixels, 64, 1280, "hub")
    assert seen["input_size"] == [128, 128] and seen["cropped"].startswith(
        "centre-cropped to 128×128, cutting 79 px from the left and 79 px from the right of the 640×480 image")


def test_qwen_is_resized_with_its_aspect_ratio_kept_and_nothing_cut():
    qwen = tiny_qwen2_vl()
    prepared = qwen.adapter.prepare(qwen, noise_image(70, 30), PROMPT)
    seen = prepared.seen
    width, height = seen["input_size"]
    assert seen["resized"] and seen["cropped"] is None and seen["padded"] is None
    assert (width, height) == (prepared.image.shape[1], prepared.image.shape[0]) == (32, 72)
    assert abs(width / height - 30 / 70) < 8 / height  # within one token (8 px) of the true aspect ratio
    assert seen["visual_tokens"] == len(prepared.visual_positions) and seen["visual_token_budget"] == 1280


def test_tiled_models_report_their_view_and_tiles():
    image = noise_image(1536, 2048)
    for build, tiles in [(tiny_idefics3, 4), (tiny_internvl, 4), (tiny_llava_next, 4)]:
        bundle = build()
        seen = bundle.adapter.prepare(bundle, image, PROMPT).seen
        assert seen["input_size"] == [32, 32] and seen["tiles"] == tiles and seen["resized"], bundle.name


def test_llava_next_padding_text_matches_the_black_rows_of_its_tiles():
    bundle = tiny_llava_next()
    prepared = bundle.adapter.prepare(bundle, noise_image(1536, 2048), PROMPT)
    assert prepared.seen["padded"] == ("high-resolution view fitted into 64×64 and padded with black, 8 px above and "
                                       "8 px below (the model drops the padded tokens)")
    mean = np.array(bundle.processor.image_processor.image_mean)[:, None, None]
    std = np.array(bundle.processor.image_processor.image_std)[:, None, None]
    first_tile = prepared.inputs["pixel_values"][0, 1].numpy() * std + mean  # top-left tile of the 64 × 64 view
    assert np.abs(first_tile[:, :8]).max() < 1e-5 and first_tile[:, 8:].max() > 0.5


def test_describe_seen_is_one_sentence_for_the_ui():
    seen = {"original_size": [640, 480], "input_size": [336, 336], "resized": True,
            "cropped": "centre-cropped to 336×336, cutting 80 px from the left and 80 px from the right of the "
                       "640×480 image (25% of it unseen)", "padded": None, "visual_tokens": 576,
            "visual_token_budget": 1280, "preset": "hub"}
    assert describe_seen(seen) == ("Model input 336×336 from 640×480: resized, centre-cropped to 336×336, cutting "
                                   "80 px from the left and 80 px from the right of the 640×480 image (25% of it "
                                   "unseen); 576 visual tokens (budget 1,280).")
    tiled = dict(seen, cropped=None, input_size=[512, 512], tiles=12, visual_tokens=832, preset="paper")
    assert describe_seen(tiled).startswith("Model input 512×512 view + 12 tiles from 640×480 (paper preset): resized;")
    assert describe_seen({}) == ""


def test_an_image_downscaled_on_upload_says_so(llava):
    image = prepare_image(noise_image(100, 4096))
    seen = llava.adapter.prepare(llava, image, PROMPT).seen
    assert seen["upload_size"] == [4096, 100] and seen["original_size"] == [2048, 50]
    assert describe_seen(seen).startswith("Model input 32×32 from 4096×100 (downscaled to 2048×50 on upload): resized")
