"""Turn whatever a user uploads into a safe RGB image, or fail with a message they can act on."""

from __future__ import annotations

import warnings

import numpy as np
from PIL import Image, ImageOps

MAX_PIXELS = 40_000_000  # decompression-bomb guard: larger images are refused before decoding
MAX_SIDE = 2048  # larger images are downscaled (the models see ≤ 1k px anyway)
MIN_SIDE = 8

Image.MAX_IMAGE_PIXELS = MAX_PIXELS


def _flatten_alpha(image: Image.Image) -> Image.Image:
    """Composite transparent images onto white, so transparent pixels do not turn black."""
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode → RGB: alpha flattened, 16/32-bit greyscale rescaled, CMYK/palette converted."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        return _flatten_alpha(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        scaled = np.zeros_like(values) if high == low else (values - low) / (high - low) * 255
        return Image.fromarray(scaled.round().astype(np.uint8)).convert("RGB")
    return image.convert("RGB")


def prepare_image(image) -> Image.Image:
    """Validate and normalise a user image (PIL, numpy array or file path) to an RGB PIL image.

    Honours EXIF rotation, takes the first frame of animations, refuses images over MAX_PIXELS or under
    MIN_SIDE px, downscales anything over MAX_SIDE px (its size before is kept in `image.info["upload_size"]` for
    "what the model saw"). Raises ValueError with a user-facing message.
    """
    if image is None:
        raise ValueError("No image: upload an image or pick one of the examples.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            if isinstance(image, np.ndarray):
                image = Image.fromarray(image)
            elif not isinstance(image, Image.Image):
                image = Image.open(image)
            if image.width * image.height > MAX_PIXELS:
                raise ValueError(f"The image is {image.width}×{image.height}; the limit is {MAX_PIXELS:,} pixels.")
            image.seek(0)
            image.load()
            image = ImageOps.exif_transpose(image)
            image = _to_rgb(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ValueError(f"The image is too large to open safely; the limit is {MAX_PIXELS:,} pixels.") from None
    except (OSError, SyntaxError, TypeError) as error:
        raise ValueError(f"This file could not be read as an image ({error}). Upload a PNG, JPEG, WebP or GIF.") from None
    if min(image.size) < MIN_SIDE:
        raise ValueError(f"The image is {image.width}×{image.height}; it must be at least {MIN_SIDE} px on each side.")
    if max(image.size) > MAX_SIDE:
        upload_size = image.size
        image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
        image.info["upload_size"] = upload_size
    return image


def expand2square(image: Image.Image, colour: tuple[int, ...]) -> Image.Image:
    """LLaVA's `expand2square`: `image` pasted centred on a square of `colour` (its longer side); squares unchanged."""
    width, height = image.size
    if width == height:
        return image
    result = Image.new(image.mode, (max(width, height),) * 2, colour)
    result.paste(image, (0, (width - height) // 2) if width > height else ((height - width) // 2, 0))
    return result


def pad_text(size: tuple[int, int], colour: tuple[int, ...]) -> str | None:
    """A sentence saying how `expand2square` padded a `size` = (w, h) image (None for a square)."""
    width, height = size
    if width == height:
        return None
    extra = abs(width - height)
    where = ("above", "below") if width > height else ("on the left", "on the right")
    side = max(width, height)
    return (f"padded to a {side}×{side} square with the mean colour {colour}, adding {extra // 2} px {where[0]} and "
            f"{extra - extra // 2} px {where[1]}")


def pad_to_square(image: Image.Image, colour: tuple[int, ...]) -> Image.Image:
    """`image` centred on a square of `colour` (`expand2square`), so a processor that centre-crops keeps all of it;
    how it was padded goes into `info["padded"]` (and an upload's size stays in `info["upload_size"]`) for "what the
    model saw". Squares are returned as they are."""
    square = expand2square(image, colour)
    if square is not image:
        square.info.update(image.info)
        square.info["padded"] = pad_text(image.size, colour)
    return square
