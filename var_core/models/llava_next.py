"""LLaVA-NeXT family adapter (`LlavaNextForConditionalGeneration`, llava-hf/llava-v1.6-*).

Token layout of one image (transformers' `pack_image_features`): first the base view — the whole image resized
to the vision tower's input size — as a raster of side × side patch tokens (after the CLS token when the
feature strategy is "full"), then the high-resolution tiles stitched into one unpadded feature map, each of its
rows closed by an `image_newline` token.

Grid provided: the base view (side × side, e.g. 24 × 24 for 336-px CLIP-L/14), drawn over the base view's pixels.
The tile tokens and newline tokens are visual tokens too (VAR's I_vis) but are not drawn.
"""

from __future__ import annotations

from PIL import Image

from var_core.models.bundle import ModelBundle, PreparedInputs
from var_core.models.common import cast_floating, pixels_to_image
from var_core.models.llava import encode_chat


def base_view_slice(config, processor) -> slice:
    """Which of the image's tokens are the base view's patch grid: a slice into its visual positions."""
    side = config.vision_config.image_size // config.vision_config.patch_size
    extra = getattr(processor, "num_additional_image_tokens", 0) or 0  # CLS tokens kept by the vision tower
    strategy = getattr(processor, "vision_feature_select_strategy", None) or config.vision_feature_select_strategy
    n_base = side * side + extra - (1 if strategy == "default" else 0)
    return slice(n_base - side * side, n_base)


class LlavaNextAdapter:
    """Inputs via the processor's chat template; all expanded `image_token_id` positions are visual tokens."""

    family = "llava_next"

    def prepare(self, bundle: ModelBundle, image: Image.Image, prompt: str) -> PreparedInputs:
        processor, config = bundle.processor, bundle.model.config
        inputs, positions = encode_chat(bundle, image, prompt)
        side = config.vision_config.image_size // config.vision_config.patch_size
        return PreparedInputs(
            inputs=cast_floating(dict(inputs), bundle.model.dtype),
            visual_positions=positions,
            grid=(side, side),
            grid_positions=positions[base_view_slice(config, processor)],
            image=pixels_to_image(inputs["pixel_values"][0, 0], processor.image_processor),  # tile 0 = base view
        )

    def decoder_layers(self, model):
        return model.model.language_model.layers
