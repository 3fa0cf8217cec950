"""User images: every mode becomes RGB, rotation is honoured, bad files give clear messages."""

import io

import numpy as np
import pytest
from PIL import Image

from var_core.images import MAX_SIDE, prepare_image


def encoded(image, fmt, **kwargs):
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    buffer.seek(0)
    return buffer


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "LA", "L", "P", "CMYK", "I;16", "1", "I", "F"])
def test_every_mode_becomes_rgb(mode):
    if mode == "I;16":
        image = Image.fromarray(np.arange(240, dtype=np.uint16).reshape(12, 20) * 200)
    else:
        image = Image.new("RGB", (20, 12), (200, 30, 40)).convert(mode)
    assert image.mode == mode
    result = prepare_image(image)
    assert result.mode == "RGB" and result.size == (20, 12)


def test_transparent_pixels_become_white():
    image = Image.new("RGBA", (10, 10), (255, 0, 0, 0))
    assert prepare_image(image).getpixel((5, 5)) == (255, 255, 255)


def test_exif_rotation_is_honoured():
    image = Image.new("RGB", (30, 10), "red")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    rotated = prepare_image(Image.open(encoded(image, "JPEG", exif=exif)))
    assert rotated.size == (10, 30)


def test_animated_gif_uses_first_frame():
    frames = [Image.new("P", (16, 16), color) for color in (1, 2, 3)]
    buffer = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert prepare_image(Image.open(buffer)).size == (16, 16)


def test_large_images_are_downscaled():
    assert max(prepare_image(Image.new("RGB", (4000, 1000))).size) == MAX_SIDE


@pytest.mark.parametrize("payload, message", [
    (None, "No image"),
    (Image.new("RGB", (1, 1)), "at least"),
    (io.BytesIO(b"this is plain text, not a picture"), "could not be read"),
    (io.BytesIO(encoded(Image.new("RGB", (64, 64)), "PNG").getvalue()[:60]), "could not be read"),
    (io.BytesIO(encoded(Image.new("RGB", (64, 64)), "JPEG").getvalue()[:200]), "could not be read"),
])
def test_bad_images_give_clear_messages(payload, message):
    with pytest.raises(ValueError, match=message):
        prepare_image(payload)


def test_decompression_bomb_is_refused_before_decoding():
    header_only = encoded(Image.new("L", (10000, 10000)), "PNG")
    with pytest.raises(ValueError, match="limit"):
        prepare_image(header_only)
