"""LLaVA family adapter (`LlavaForConditionalGeneration`): one image, a square grid of patch tokens.

Two presets (`bundle.extra["preset"]`, var_core.models.common.PRESETS): "hub" (default) runs the processor and chat
template as published — llava-1.5-hf's CLIP processor resizes the shortest edge to 336 and centre-crops, so the
sides of a wide image never reach the model. "paper" runs LLaVA-1.5 as the VAR authors did (their `mm_utils.py` and
`conversation.py`, copies of haotian-liu/LLaVA's): the image padded to a square of the processor's mean colour
(`expand2square`) before the processor, and the `vicuna_v1` conversation template.
"""

from __future__ import annotations

from PIL import Image

from var_core.budget import refuse_below, visual_token_budget
from var_core.images import expand2square, pad_text
from var_core.models.bundle import ModelBundle, PreparedInputs
from var_core.models.common import mean_colour, pixels_to_image, preset_of, seen_record, square_grid
from var_core.models.generic import GenericAdapter, encode_chat, encode_text

# conv_templates["vicuna_v1"] of LLaVA's llava/conversation.py (SeparatorStyle.TWO, sep " ", roles USER/ASSISTANT)
VICUNA_V1_SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. "
                    "The assistant gives helpful, detailed, and polite answers to the user's questions.")


def vicuna_v1_prompt(prompt: str, image_token: str = "<image>") -> str:
    """The paper's prompt for one question: system, `USER: <image>\\n{prompt}`, then the open `ASSISTANT:` turn."""
    return f"{VICUNA_V1_SYSTEM} USER: {image_token}\n{prompt} ASSISTANT:"


def pads_to_square(image_processor) -> bool:
    """Whether the processor itself pads to square first (transformers' LlavaImageProcessor with do_pad)."""
    return bool(getattr(image_processor, "do_pad", False)) and hasattr(image_processor, "pad_to_square")


def clip_steps(size: tuple[int, int], image_processor) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
    """What a CLIP-style processor does to a `size` = (w, h) image, from its settings: (w, h) after its resize, and
    the (left, right, top, bottom) px its centre crop then cuts (transformers' resize and center_crop arithmetic)."""
    width, height = size
    if image_processor.do_resize:
        target = image_processor.size
        if target.shortest_edge:
            short, long = sorted((width, height))
            new_short, new_long = target.shortest_edge, int(target.shortest_edge * long / short)
            width, height = (new_short, new_long) if width <= height else (new_long, new_short)
        else:
            width, height = target.width, target.height
    if not image_processor.do_center_crop:
        return (width, height), (0, 0, 0, 0)
    crop = image_processor.crop_size
    dx, dy = max(width - crop.width, 0), max(height - crop.height, 0)
    return (width, height), (dx // 2, dx - dx // 2, dy // 2, dy - dy // 2)


def crop_text(size: tuple[int, int], resized: tuple[int, int], cut: tuple[int, int, int, int],
              crop: tuple[int, int]) -> str | None:
    """A sentence saying what the centre crop cut, in px of the `size` image (None when nothing was cut)."""
    if not any(cut):
        return None
    (width, height), (rw, rh), (left, right, top, bottom) = size, resized, cut
    sides = []
    if left or right:
        sides.append(f"{round(left * width / rw)} px from the left and {round(right * width / rw)} px from the right")
    if top or bottom:
        sides.append(f"{round(top * height / rh)} px from the top and {round(bottom * height / rh)} px from the bottom")
    unseen = 1 - crop[0] * crop[1] / (rw * rh)
    return (f"centre-cropped to {crop[0]}×{crop[1]}, cutting {' and '.join(sides)} of the {width}×{height} image "
            f"({unseen:.0%} of it unseen)")


def llava_seen(image: Image.Image, shown: Image.Image, image_processor, pixels, tokens: int, budget: int,
               preset: str) -> dict:
    """`PreparedInputs.seen` for a CLIP-style LLaVA: `shown` is what entered the processor (padded in "paper")."""
    if pads_to_square(image_processor):
        shown = expand2square(shown, mean_colour(image_processor))
    resized, cut = clip_steps(shown.size, image_processor)
    input_size = (pixels.shape[-1], pixels.shape[-2])
    padded = pad_text(image.size, mean_colour(image_processor)) if shown.size != image.size else None
    return seen_record(image, input_size, resized != shown.size, tokens, budget, preset,
                       cropped=crop_text(shown.size, resized, cut, input_size), padded=padded)


class LlavaAdapter(GenericAdapter):
    """Inputs via the processor's chat template ("hub") or the paper's pad-to-square + vicuna_v1 prompt ("paper");
    visual tokens are the expanded `image_token_id` positions.

    paper_preset: whether the "paper" preset may run (False for models trained with another template)."""

    family = "llava"

    def __init__(self, paper_preset: bool = True):
        self.paper_preset = paper_preset

    def prepare(self, bundle: ModelBundle, image: Image.Image, prompt: str) -> PreparedInputs:
        processor = bundle.processor
        preset, budget = preset_of(bundle), visual_token_budget(bundle)
        if preset == "paper":
            shown = expand2square(image, mean_colour(processor.image_processor))
            inputs, positions = encode_text(bundle, shown, vicuna_v1_prompt(prompt, processor.image_token))
        else:
            shown = image
            inputs, positions = encode_chat(bundle, image, prompt)
        refuse_below(budget, len(positions), f"that {bundle.name} always gives (fixed input size)")
        pixels = inputs["pixel_values"][0]
        return PreparedInputs(
            inputs=dict(inputs),
            visual_positions=positions,
            grid=square_grid(len(positions)),
            image=pixels_to_image(pixels, processor.image_processor),
            seen=llava_seen(image, shown, processor.image_processor, pixels, len(positions), budget, preset),
        )
