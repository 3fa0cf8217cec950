"""The generic path: any `AutoModelForImageTextToText` model whose text model attends through transformers'
`AttentionInterface` and whose config names an image token.

What every family shares lives here: the prompt is one user turn (the image, then the question) in the processor's
chat template; the visual tokens are the positions of `config.image_token_id` (or `image_token_index`) in the
expanded `input_ids`; the decoder layers are `model.get_decoder().layers`. A family adapter subclasses
`GenericAdapter` only for what is truly its own: the size controls that keep an image within the visual-token
budget (`image_kwargs`) and the patch grid (`layout`). Without one, the visual tokens are drawn as a 1-D strip in
token order, and `seen["grid_note"]` says so.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from var_core.budget import check_budget, visual_token_budget
from var_core.limits import MAX_NEW_TOKENS_LIMIT
from var_core.models.bundle import ModelBundle, PreparedInputs
from var_core.models.common import cast_floating, preset_of, seen_record, token_positions

STRIP_NOTE = ("no patch grid is known for this architecture: its visual tokens are drawn as a 1-D strip in token "
              "order over the image as given, not at their places on the image")


def image_token_id(config) -> int | None:
    """The id of the token the processor expands per visual token: `image_token_id`, else `image_token_index`."""
    for name in ("image_token_id", "image_token_index"):
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    return None


def attends_through_interface(model: torch.nn.Module) -> bool:
    """Whether the text model's attention goes through `AttentionInterface` (so the hook can be switched in)."""
    return bool(getattr(model.get_decoder(), "_supports_attention_backend", False))


def generic_problem(model: torch.nn.Module) -> str | None:
    """Why the generic path cannot serve `model`, or None."""
    if image_token_id(model.config) is None:
        return "its config names no image token (image_token_id / image_token_index)"
    if not hasattr(model, "get_decoder") or not hasattr(model.get_decoder(), "layers"):
        return "get_decoder() gives no decoder with .layers"
    if not attends_through_interface(model):
        return "its text model does not attend through transformers' AttentionInterface"
    return None


def sliding_window(text_config) -> int | None:
    """The text model's attention window where some layer uses one (Gemma 3's local layers, Mistral v0.1), else None."""
    window = getattr(text_config, "sliding_window", None)
    layer_types = getattr(text_config, "layer_types", None)
    return window if window and (layer_types is None or "sliding_attention" in layer_types) else None


def check_window(bundle: ModelBundle, prompt_tokens: int) -> None:
    """Refuse a prompt that, with the longest answer `generate` allows, could outgrow a sliding window: past it the
    cache drops the oldest keys, and the hook, which reads key index as token position, would trace wrong keys."""
    window = sliding_window(bundle.text_config)
    if window is not None and prompt_tokens + MAX_NEW_TOKENS_LIMIT > window:
        raise ValueError(f"{bundle.name} attends within a sliding window of {window:,} tokens in some layers; this "
                         f"prompt is {prompt_tokens:,} tokens and an answer may add {MAX_NEW_TOKENS_LIMIT}, past which "
                         "the VAR hook cannot follow the cache: shorten the question or lower the visual-token budget")


def chat_messages(prompt: str) -> list[dict]:
    """A single user turn with the image first, then the question (LLaVA-1.5's layout)."""
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]


def encode_text(bundle: ModelBundle, images, text: str, **image_kwargs):
    """Processor inputs for `text` (already templated) and `images`, and the positions of the image tokens.

    image_kwargs: size controls for this call's image processor (the visual-token budget)."""
    inputs = bundle.processor(images=images, text=[text], return_tensors="pt", **image_kwargs)
    return inputs, token_positions(inputs["input_ids"][0], image_token_id(bundle.model.config))


def encode_chat(bundle: ModelBundle, images, prompt: str, **image_kwargs):
    """Processor inputs for one user turn (image, then `prompt`) in the processor's chat template.

    images: what this family's processor takes for one image (an image, [image] or [[image]])."""
    text = bundle.processor.apply_chat_template(chat_messages(prompt), add_generation_prompt=True)
    return encode_text(bundle, images, text, **image_kwargs)


class GenericAdapter:
    """Chat-template inputs, visual tokens from the image token id, layers from `get_decoder()`; a 1-D strip.

    Subclasses give `images` (how their processor takes one image), `image_kwargs` (budget controls) and `layout`."""

    family = "generic"

    def images(self, bundle: ModelBundle, image: Image.Image, budget: int):
        """What the processor takes for a batch of one prompt with one image (a family may downscale it)."""
        return [image]

    def image_kwargs(self, bundle: ModelBundle, image: Image.Image, budget: int) -> dict:
        """Size controls for the processor that keep `image` within `budget` visual tokens (none known here)."""
        return {}

    def prepare(self, bundle: ModelBundle, image: Image.Image, prompt: str) -> PreparedInputs:
        budget = visual_token_budget(bundle)
        inputs, positions = encode_chat(bundle, self.images(bundle, image, budget), prompt,
                                        **self.image_kwargs(bundle, image, budget))
        check_budget(len(positions), budget, f"the {image.width}×{image.height} image")
        check_window(bundle, inputs["input_ids"].shape[1])
        inputs = {name: value for name, value in inputs.items() if name != "labels"}  # PaliGemma's training targets
        prepared = self.layout(bundle, image, inputs, positions, preset_of(bundle), budget)
        prepared.inputs = cast_floating(prepared.inputs, bundle.model.dtype)  # after `layout` read the pixels
        return prepared

    def layout(self, bundle: ModelBundle, image: Image.Image, inputs: dict, positions: torch.Tensor, preset: str,
               budget: int) -> PreparedInputs:
        """Where the visual tokens go on the picture: here a 1 × N strip over the image as given, with a note."""
        shown = np.array(image.convert("RGB"))
        seen = seen_record(image, image.size, False, len(positions), budget, preset)
        seen["grid_note"] = STRIP_NOTE
        return PreparedInputs(inputs=inputs, visual_positions=positions, grid=(1, len(positions)), image=shown,
                              seen=seen)

    def decoder_layers(self, model: torch.nn.Module) -> torch.nn.ModuleList:
        return model.get_decoder().layers
