"""InternVL adapter (`InternVLForConditionalGeneration`, the transformers-native "-hf" checkpoints, e.g.
OpenGVLab/InternVL3-1B-hf). Remote-code InternVL checkpoints are not supported (`trust_remote_code` stays off).

Dynamic tiling: the processor cuts the image into up to `max_patches` tiles of the vision tower's input size
(chosen by aspect ratio) and, when there is more than one tile, appends a thumbnail (the whole image resized to one
tile). Each tile becomes `image_seq_length` tokens (patch grid pixel-shuffled by 0.5: 448/14 = 32 → 16 × 16 = 256).
The prompt holds `<img>` + `<IMG_CONTEXT>` × (tiles · image_seq_length) + `</img>`; the `<IMG_CONTEXT>` tokens are
the visual tokens (the `<img>`/`</img>` markers are text).

Grid provided: the thumbnail tile's tokens (the last tile) — or the single tile when the image was not split —
as a side × side raster drawn over that tile's pixels. The other tiles' tokens are visual tokens for VAR only.
"""

from __future__ import annotations

from PIL import Image

from var_core.models.bundle import ModelBundle, PreparedInputs
from var_core.models.common import check_count, last_tile_inputs
from var_core.models.llava import encode_chat


class InternVLAdapter:
    """Inputs via the processor's chat template; visual tokens are the `<IMG_CONTEXT>` (`image_token_id`) positions."""

    family = "internvl"

    def prepare(self, bundle: ModelBundle, image: Image.Image, prompt: str) -> PreparedInputs:
        processor = bundle.processor
        inputs, positions = encode_chat(bundle, [image], prompt)
        tiles = inputs["pixel_values"].shape[0]  # [tiles, 3, H, W]; the thumbnail is last when tiles > 1
        per_tile = processor.image_seq_length
        check_count(len(positions), tiles * per_tile, f"image tokens for {tiles} tile(s)")
        return last_tile_inputs(bundle, inputs, positions, per_tile, inputs["pixel_values"][-1])

    def decoder_layers(self, model):
        return model.model.language_model.layers
