"""InternVL adapter (`InternVLForConditionalGeneration`, the transformers-native "-hf" checkpoints, e.g.
OpenGVLab/InternVL3-1B-hf). Remote-code InternVL checkpoints are not supported (`trust_remote_code` stays off).

Dynamic tiling: the processor cuts the image into up to `max_patches` tiles of the vision tower's input size
(chosen by aspect ratio) and, when there is more than one tile, appends a thumbnail (the whole image resized to one
tile). Each tile becomes `image_seq_length` tokens (patch grid pixel-shuffled by 0.5: 448/14 = 32 → 16 × 16 = 256).
The prompt holds `<img>` + `<IMG_CONTEXT>` × (tiles · image_seq_length) + `</img>`; the `<IMG_CONTEXT>` tokens are
the visual tokens (the `<img>`/`</img>` markers are text).

Visual-token budget: the hub processors leave `crop_to_patches` off: one 448² tile (the image resized to a square),
256 tokens, fixed. With tiling on, the call's `max_patches` is capped so that tiles + thumbnail fit the budget.

Grid provided: the thumbnail tile's tokens (the last tile) — or the single tile when the image was not split —
as a side × side raster drawn over that tile's pixels. The other tiles' tokens are visual tokens for VAR only.
"""

from __future__ import annotations

from PIL import Image

from var_core.budget import check_budget, refuse_below, visual_token_budget
from var_core.models.bundle import ModelBundle, PreparedInputs
from var_core.models.common import check_count, last_tile_inputs, preset_of, seen_record
from var_core.models.llava import encode_chat


def budget_tiles(image_processor, per_tile: int, budget: int, name: str) -> dict:
    """Call kwargs capping the tile count so tiles (+ the thumbnail that comes with more than one) fit `budget`."""
    refuse_below(budget, per_tile, f"of one {name} tile")
    if not image_processor.crop_to_patches:
        return {}
    max_patches = min(image_processor.max_patches, max(1, budget // per_tile - 1))
    return {"max_patches": max_patches, "min_patches": min(image_processor.min_patches, max_patches)}


class InternVLAdapter:
    """Inputs via the processor's chat template; visual tokens are the `<IMG_CONTEXT>` (`image_token_id`) positions."""

    family = "internvl"

    def prepare(self, bundle: ModelBundle, image: Image.Image, prompt: str) -> PreparedInputs:
        processor = bundle.processor
        preset, budget = preset_of(bundle), visual_token_budget(bundle)
        per_tile = processor.image_seq_length
        tiling = budget_tiles(processor.image_processor, per_tile, budget, bundle.name)
        inputs, positions = encode_chat(bundle, [image], prompt, **tiling)
        tiles = inputs["pixel_values"].shape[0]  # [tiles, 3, H, W]; the thumbnail is last when tiles > 1
        check_count(len(positions), tiles * per_tile, f"image tokens for {tiles} tile(s)")
        check_budget(len(positions), budget, f"the {image.width}×{image.height} image")
        view = inputs["pixel_values"][-1]
        input_size = (view.shape[-1], view.shape[-2])
        seen = seen_record(image, input_size, input_size != image.size, len(positions), budget, preset,
                           tiles=tiles - 1)
        return last_tile_inputs(bundle, inputs, positions, per_tile, view, seen)

    def decoder_layers(self, model):
        return model.model.language_model.layers
