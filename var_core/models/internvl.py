"""InternVL adapter (`InternVLForConditionalGeneration`, the transformers-native "-hf" checkpoints, e.g.
OpenGVLab/InternVL3-1B-hf). Remote-code InternVL checkpoints are not supported (`trust_remote_code` stays off).

Dynamic tiling: the processor cuts the image into up to `max_patches` tiles of the vision tower's input size
(chosen by aspect ratio) and, when there is more than one tile, appends a thumbnail (the whole image resized to one
tile). Each tile becomes `image_seq_length` tokens (patch grid pixel-shuffled by 0.5: 448/14 = 32 → 16 × 16 = 256).
The prompt holds `<img>` + `<IMG_CONTEXT>` × (tiles · image_seq_length) + `</img>`; the `<IMG_CONTEXT>` tokens are
the visual tokens (the `<img>`/`</img>` markers are text).

Visual-token budget: the hub processors leave `crop_to_patches` off: one 448² tile (the image resized to a square),
256 tokens, fixed. With tiling on, the call's `max_patches` is capped so that tiles + thumbnail fit the budget.

Layout drawn: every tile's tokens (side × side each) over that tile's pixels, the tiles back in the rows × cols
arrangement the processor chose (`get_optimal_tiled_canvas`, recomputed from the image size), the thumbnail one cell
to their right; a single tile (the hub default) is one side × side view.
"""

from __future__ import annotations

import torch
from PIL import Image

from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import get_optimal_tiled_canvas

from var_core.budget import refuse_below
from var_core.layout import single_view
from var_core.models.bundle import ModelBundle, PreparedInputs
from var_core.models.common import check_count, seen_record, square_grid, tile_pictures, tiles_beside_global
from var_core.models.generic import GenericAdapter


def budget_tiles(image_processor, per_tile: int, budget: int, name: str) -> dict:
    """Call kwargs capping the tile count so tiles (+ the thumbnail that comes with more than one) fit `budget`."""
    refuse_below(budget, per_tile, f"of one {name} tile")
    if not image_processor.crop_to_patches:
        return {}
    max_patches = min(image_processor.max_patches, max(1, budget // per_tile - 1))
    return {"max_patches": max_patches, "min_patches": min(image_processor.min_patches, max_patches)}


class InternVLAdapter(GenericAdapter):
    """The generic path with the tile count capped by the budget; the tiles in place and the thumbnail drawn."""

    family = "internvl"

    def image_kwargs(self, bundle: ModelBundle, image: Image.Image, budget: int) -> dict:
        return budget_tiles(bundle.processor.image_processor, bundle.processor.image_seq_length, budget, bundle.name)

    def layout(self, bundle: ModelBundle, image: Image.Image, inputs: dict, positions: torch.Tensor, preset: str,
               budget: int) -> PreparedInputs:
        image_processor, per_tile = bundle.processor.image_processor, bundle.processor.image_seq_length
        tiles = inputs["pixel_values"].shape[0]  # [tiles, 3, H, W]; the thumbnail is last when tiles > 1
        check_count(len(positions), tiles * per_tile, f"image tokens for {tiles} tile(s)")
        pictures = tile_pictures(inputs["pixel_values"], image_processor)
        side = square_grid(per_tile)
        view = inputs["pixel_values"][-1]
        input_size = (view.shape[-1], view.shape[-2])
        seen = seen_record(image, input_size, input_size != image.size, len(positions), budget, preset,
                           tiles=tiles - 1)
        if tiles == 1:
            return PreparedInputs.laid_out(inputs, positions, single_view(pictures[0], *side), seen)
        limits = {"min_patches": image_processor.min_patches, "max_patches": image_processor.max_patches,
                  **self.image_kwargs(bundle, image, budget)}
        cols, rows = get_optimal_tiled_canvas((image.height, image.width), (view.shape[-2], view.shape[-1]),
                                              limits["min_patches"], limits["max_patches"])
        check_count(rows * cols, tiles - 1, f"tiles in the {rows}×{cols} arrangement (of {tiles - 1})")
        layout = tiles_beside_global(pictures[:-1], rows, cols, side, 0, pictures[-1], (tiles - 1) * per_tile,
                                     "thumbnail")
        return PreparedInputs.laid_out(inputs, positions, layout, seen)
