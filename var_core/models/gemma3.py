"""Gemma 3 adapter (`Gemma3ForConditionalGeneration`, e.g. google/gemma-3-4b-it).

The processor resizes the image to the SigLIP tower's square input (896² on the hub) without keeping the aspect
ratio; the projector average-pools the 64 × 64 patch grid to `mm_tokens_per_image` soft tokens (16 × 16 = 256) in
raster order, between `<start_of_image>` and `<end_of_image>` (text). With pan & scan on (off by default) the
original image comes first, then its crops, each another 256 tokens.

Visual-token budget: fixed, 256 per view; pan & scan's crops are capped so all views fit.

Layout drawn: the original image's tokens (the first `mm_tokens_per_image`) as a square raster over its pixels;
with pan & scan, its crops (cut side by side along the image's longer side, as `pan_and_scan` cuts them) back in
place, the original image one cell to their right.
"""

from __future__ import annotations

import torch
from PIL import Image

from var_core.budget import refuse_below
from var_core.models.bundle import ModelBundle, PreparedInputs
from var_core.layout import single_view
from var_core.models.common import check_count, seen_record, square_grid, tile_pictures, tiles_beside_global
from var_core.models.generic import GenericAdapter


PAN_AND_SCAN = ("pan_and_scan_min_crop_size", "pan_and_scan_max_num_crops", "pan_and_scan_min_ratio_to_activate")


class Gemma3Adapter(GenericAdapter):
    """The generic path; the image's pooled soft tokens, and pan & scan's crops in place beside them."""

    family = "gemma3"

    def image_kwargs(self, bundle: ModelBundle, image: Image.Image, budget: int) -> dict:
        per_view = bundle.model.config.mm_tokens_per_image
        refuse_below(budget, per_view, f"of one {bundle.name} image")
        image_processor = bundle.processor.image_processor
        if not image_processor.do_pan_and_scan:
            return {}
        # the processor's own call defaults (pan & scan off, 256-px crops) would override the image processor's
        saved = {name: getattr(image_processor, name) for name in PAN_AND_SCAN
                 if getattr(image_processor, name, None) is not None}
        crops = min(saved.get("pan_and_scan_max_num_crops", budget), budget // per_view - 1)
        return {**saved, "do_pan_and_scan": True, "pan_and_scan_max_num_crops": crops}

    def layout(self, bundle: ModelBundle, image: Image.Image, inputs: dict, positions: torch.Tensor, preset: str,
               budget: int) -> PreparedInputs:
        per_view = bundle.model.config.mm_tokens_per_image
        views = inputs["pixel_values"].shape[0]  # [views, 3, H, W]: the image, then its pan & scan crops
        check_count(len(positions), views * per_view, f"image tokens for {views} view(s)")
        pictures = tile_pictures(inputs["pixel_values"], bundle.processor.image_processor)
        side = square_grid(per_view)
        input_size = (pictures.shape[2], pictures.shape[1])
        seen = seen_record(image, input_size, input_size != image.size, len(positions), budget, preset,
                           tiles=views - 1)
        if views == 1:
            return PreparedInputs.laid_out(inputs, positions, single_view(pictures[0], *side), seen)
        rows, cols = (1, views - 1) if image.width >= image.height else (views - 1, 1)
        layout = tiles_beside_global(pictures[1:], rows, cols, side, per_view, pictures[0], 0, "original image")
        return PreparedInputs.laid_out(inputs, positions, layout, seen)
