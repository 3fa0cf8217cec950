"""Idefics3 / SmolVLM adapter (`Idefics3ForConditionalGeneration`, `SmolVLMForConditionalGeneration`;
e.g. HuggingFaceTB/SmolVLM-256M-Instruct).

Image splitting: the processor resizes the image (longest edge), cuts it into rows × cols tiles of the vision
encoder's size and appends a global image (the whole image resized to one tile). Each tile becomes `image_seq_len`
`<image>` tokens (patch grid pixel-shuffled by `scale_factor`: 512/16 = 32 → 8 × 8 = 64), wrapped in
`<fake_token_around_image>` and `<row_r_col_c>` / `<global-img>` markers (text). Without splitting, only the
global image is there.

Visual-token budget: the call's `size={"longest_edge": L}` with the largest L (the processor's own, else a multiple
of the tile) whose frames × `image_seq_len` fit, counted by the image processor's `get_number_of_image_patches`.
Each tile and the global image are square: both are resized without keeping the aspect ratio.

Layout drawn: every tile's tokens (side × side each) over that tile's pixels, tiles back in their rows × cols
(`get_number_of_image_patches`, as the processor counted them), the global image (always the last `image_seq_len`
`<image>` tokens) one cell to their right; an image that was not split is the global image alone.
"""

from __future__ import annotations

import math

import torch
from PIL import Image

from var_core.budget import refuse_below
from var_core.models.bundle import ModelBundle, PreparedInputs
from var_core.layout import single_view
from var_core.models.common import check_count, seen_record, square_grid, tile_pictures, tiles_beside_global
from var_core.models.generic import GenericAdapter


def tile_arrangement(image_processor, image: Image.Image, longest_edge: int) -> tuple[int, int, int]:
    """(frames, tile rows, tile cols) the processor makes of `image` at this longest edge (frames: tiles + global
    image, or 1 when it is not split)."""
    n, rows, cols = image_processor.get_number_of_image_patches(image.height, image.width,
                                                                {"size": {"longest_edge": longest_edge}})
    return max(n, 1), rows, cols


def frames_at(image_processor, image: Image.Image, longest_edge: int) -> int:
    """How many frames (tiles + global image, or 1) the processor makes of `image` at this longest edge."""
    return tile_arrangement(image_processor, image, longest_edge)[0]


def budget_longest_edge(processor, image: Image.Image, budget: int, name: str) -> int:
    """The largest longest edge, up to the processor's own, that keeps `image` within `budget` visual tokens."""
    image_processor, per_frame = processor.image_processor, processor.image_seq_len
    refuse_below(budget, per_frame, f"of {name}'s global image")
    own, tile = image_processor.size["longest_edge"], image_processor.max_image_size["longest_edge"]
    candidates = [own] + [k * tile for k in range(math.ceil(own / tile) - 1, 0, -1)]
    # the last candidate is one tile: one frame, within the budget checked above
    return next(edge for edge in candidates if frames_at(image_processor, image, edge) * per_frame <= budget)


class Idefics3Adapter(GenericAdapter):
    """The generic path with the longest edge capped by the budget; the tiles in place and the global image drawn."""

    family = "idefics3"

    def images(self, bundle: ModelBundle, image: Image.Image, budget: int):
        return [[image]]

    def image_kwargs(self, bundle: ModelBundle, image: Image.Image, budget: int) -> dict:
        return {"size": {"longest_edge": budget_longest_edge(bundle.processor, image, budget, bundle.name)}}

    def layout(self, bundle: ModelBundle, image: Image.Image, inputs: dict, positions: torch.Tensor, preset: str,
               budget: int) -> PreparedInputs:
        frames = inputs["pixel_values"].shape[1]  # [1, frames, 3, H, W]: tiles row by row, then the global image
        per_frame = bundle.processor.image_seq_len
        check_count(len(positions), frames * per_frame, f"image tokens for {frames} frame(s)")
        image_processor = bundle.processor.image_processor
        pictures = tile_pictures(inputs["pixel_values"][0], image_processor)
        side = square_grid(per_frame)
        global_view = inputs["pixel_values"][0, -1]
        input_size = (global_view.shape[-1], global_view.shape[-2])
        seen = seen_record(image, input_size, input_size != image.size, len(positions), budget, preset,
                           tiles=frames - 1)
        if frames == 1:
            return PreparedInputs.laid_out(inputs, positions, single_view(pictures[0], *side), seen)
        edge = self.image_kwargs(bundle, image, budget)["size"]["longest_edge"]
        _, rows, cols = tile_arrangement(image_processor, image, edge)
        check_count(rows * cols, frames - 1, f"tiles in the {rows}×{cols} arrangement (of {frames - 1})")
        layout = tiles_beside_global(pictures[:-1], rows, cols, side, 0, pictures[-1], (frames - 1) * per_frame,
                                     "global image")
        return PreparedInputs.laid_out(inputs, positions, layout, seen)
