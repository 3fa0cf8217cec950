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

import torch
from PIL import Image

from var_core.budget import refuse_below
from var_core.models.bundle import ModelBundle, PreparedInputs
from var_core.models.common import check_count, last_tile_inputs, seen_record
from var_core.models.generic import GenericAdapter


def budget_tiles(image_processor, per_tile: int, budget: int, name: str) -> dict:
    """Call kwargs capping the tile count so tiles (+ the thumbnail that comes with more than one) fit `budget`."""
    refuse_below(budget, per_tile, f"of one {name} tile")
    if not image_processor.crop_to_patches:
        return {}
    max_patches = min(image_processor.max_patches, max(1, budget // per_tile - 1))
    return {"max_patches": max_patches, "min_patches": min(image_processor.min_patches, max_patches)}


class InternVLAdapter(GenericAdapter):
    """The generic path with the tile count capped by the budget; the thumbnail (or single tile) is the grid."""

    family = "internvl"

    def image_kwargs(self, bundle: ModelBundle, image: Image.Image, budget: int) -> dict:
        return budget_tiles(bundle.processor.image_processor, bundle.processor.image_seq_length, budget, bundle.name)

    def layout(self, bundle: ModelBundle, image: Image.Image, inputs: dict, positions: torch.Tensor, preset: str,
               budget: int) -> PreparedInputs:
        per_tile = bundle.processor.image_seq_length
        tiles = inputs["pixel_values"].shape[0]  # [tiles, 3, H, W]; the thumbnail is last when tiles > 1
        check_count(len(positions), tiles * per_tile, f"image tokens for {tiles} tile(s)")
        view = inputs["pixel_values"][-1]
        input_size = (view.shape[-1], view.shape[-2])
        seen = seen_record(image, input_size, input_size != image.size, len(positions), budget, preset,
                           tiles=tiles - 1)
        return last_tile_inputs(bundle, inputs, positions, per_tile, view, seen)
