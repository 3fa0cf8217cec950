"""Idefics3 / SmolVLM adapter (`Idefics3ForConditionalGeneration`, `SmolVLMForConditionalGeneration`;
e.g. HuggingFaceTB/SmolVLM-256M-Instruct).

Image splitting: the processor resizes the image (longest edge), cuts it into rows × cols tiles of the vision
encoder's size and appends a global image (the whole image resized to one tile). Each tile becomes `image_seq_len`
`<image>` tokens (patch grid pixel-shuffled by `scale_factor`: 512/16 = 32 → 8 × 8 = 64), wrapped in
`<fake_token_around_image>` and `<row_r_col_c>` / `<global-img>` markers (text). Without splitting, only the
global image is there.

Grid provided: the global image's tokens (always the last `image_seq_len` `<image>` tokens) as a side × side
raster over the global image's pixels. The tile tokens are visual tokens for VAR only.
"""

from __future__ import annotations

from PIL import Image

from var_core.models.bundle import ModelBundle, PreparedInputs
from var_core.models.common import check_count, last_tile_inputs
from var_core.models.llava import encode_chat


class Idefics3Adapter:
    """Inputs via the processor's chat template; visual tokens are the expanded `<image>` (`image_token_id`)."""

    family = "idefics3"

    def prepare(self, bundle: ModelBundle, image: Image.Image, prompt: str) -> PreparedInputs:
        processor = bundle.processor
        inputs, positions = encode_chat(bundle, [[image]], prompt)
        frames = inputs["pixel_values"].shape[1]  # [1, frames, 3, H, W]: tiles row by row, then the global image
        per_frame = processor.image_seq_len
        check_count(len(positions), frames * per_frame, f"image tokens for {frames} frame(s)")
        return last_tile_inputs(bundle, inputs, positions, per_frame, inputs["pixel_values"][0, -1])

    def decoder_layers(self, model):
        return model.model.text_model.layers
