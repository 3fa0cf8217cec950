"""LLaVA family adapter (`LlavaForConditionalGeneration`): one image, a square grid of patch tokens."""

from __future__ import annotations

from PIL import Image

from var_core.models.bundle import ModelBundle, PreparedInputs
from var_core.models.common import pixels_to_image, square_grid, token_positions


def chat_messages(prompt: str) -> list[dict]:
    """A single user turn with the image first, then the question (LLaVA-1.5's layout)."""
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]


def encode_chat(bundle: ModelBundle, images, prompt: str):
    """Processor inputs for one user turn (image, then `prompt`) and the positions of the image tokens.

    images: what this family's processor takes for one image (an image, [image] or [[image]]).
    """
    processor = bundle.processor
    text = processor.apply_chat_template(chat_messages(prompt), add_generation_prompt=True)
    inputs = processor(images=images, text=[text], return_tensors="pt")
    return inputs, token_positions(inputs["input_ids"][0], bundle.model.config.image_token_id)


class LlavaAdapter:
    """Inputs via the processor's chat template; visual tokens are the expanded `image_token_id` positions."""

    family = "llava"

    def prepare(self, bundle: ModelBundle, image: Image.Image, prompt: str) -> PreparedInputs:
        processor = bundle.processor
        inputs, positions = encode_chat(bundle, image, prompt)
        return PreparedInputs(
            inputs=dict(inputs),
            visual_positions=positions,
            grid=square_grid(len(positions)),
            image=pixels_to_image(inputs["pixel_values"][0], processor.image_processor),
        )

    def decoder_layers(self, model):
        return model.model.language_model.layers
