"""Qwen2-VL and Qwen2.5-VL adapter (`Qwen2VLForConditionalGeneration`, `Qwen2_5_VLForConditionalGeneration`).

Dynamic resolution: the processor resizes the image so both sides are multiples of patch × merge (14 × 2 = 28)
within its pixel budget, cuts it into patch × patch pixels and the vision tower merges each merge × merge block of
patches into one token. The prompt's `<|vision_start|><|image_pad|><|vision_end|>` is expanded to one
`<|image_pad|>` per merged token; those are the visual tokens (the start/end markers are text).

Visual-token budget: one token per (patch · merge)² pixels, so the call's `size` caps the pixels at
budget · (patch · merge)² (`longest_edge` is max_pixels in these processors) — never above the processor's own cap —
and keeps its `shortest_edge` (min_pixels: 3,136 px = 4 tokens for the hub models).

Grid provided: all visual tokens, (h / merge, w / merge) rows × cols from `image_grid_thw`, raster order (the
vision tower emits merged tokens row by row; Qwen2.5-VL's window attention restores that order at its output),
drawn over the resized image rebuilt from `pixel_values`. The text model uses 3-D (temporal, height, width) rope
position ids; the hook does not depend on them.
"""

from __future__ import annotations

import math

import torch
from PIL import Image

from var_core.budget import refuse_below
from var_core.models.bundle import ModelBundle, PreparedInputs
from var_core.models.common import check_count, pixels_to_image, seen_record
from var_core.models.generic import GenericAdapter


def unpatchify(pixel_values: torch.Tensor, grid_thw, patch: int, merge: int, temporal: int) -> torch.Tensor:
    """Undo the processor's patch flattening: [t·h·w, C·T·P·P] → [C, h·P, w·P] (first frame), still normalised."""
    _, h, w = (int(v) for v in grid_thw)
    channels = pixel_values.shape[-1] // (temporal * patch * patch)
    x = pixel_values[: h * w].reshape(h // merge, w // merge, merge, merge, channels, temporal, patch, patch)
    x = x[:, :, :, :, :, 0]  # (gh, gw, mh, mw, C, ph, pw)
    return x.permute(4, 0, 2, 5, 1, 3, 6).reshape(channels, h * patch, w * patch)


def budget_size(image_processor, budget: int, name: str) -> dict:
    """The `size` (min / max pixels) that keeps one image within `budget` merged tokens; refuses a budget below the
    processor's minimum (min_pixels rounded up to whole tokens)."""
    per_token = (image_processor.patch_size * image_processor.merge_size) ** 2
    min_pixels, max_pixels = image_processor.size.shortest_edge, image_processor.size.longest_edge
    refuse_below(budget, math.ceil(min_pixels / per_token), f"{name}'s processor needs (min_pixels "
                 f"{min_pixels:,})")
    return {"shortest_edge": min_pixels, "longest_edge": min(max_pixels, budget * per_token)}


class Qwen2VLAdapter(GenericAdapter):
    """The generic path with the processor's pixel budget and the merged-patch grid from `image_grid_thw`."""

    family = "qwen2_vl"

    def image_kwargs(self, bundle: ModelBundle, image: Image.Image, budget: int) -> dict:
        return {"size": budget_size(bundle.processor.image_processor, budget, bundle.name)}

    def layout(self, bundle: ModelBundle, image: Image.Image, inputs: dict, positions: torch.Tensor, preset: str,
               budget: int) -> PreparedInputs:
        vision = bundle.model.config.vision_config
        merge, patch = vision.spatial_merge_size, vision.patch_size
        grid_thw = inputs["image_grid_thw"][0]
        rows, cols = int(grid_thw[1]) // merge, int(grid_thw[2]) // merge
        check_count(len(positions), rows * cols, "image tokens")
        pixels = unpatchify(inputs["pixel_values"], grid_thw, patch, merge, vision.temporal_patch_size)
        input_size = (int(grid_thw[2]) * patch, int(grid_thw[1]) * patch)
        return PreparedInputs(
            inputs=inputs,
            visual_positions=positions,
            grid=(rows, cols),
            image=pixels_to_image(pixels, bundle.processor.image_processor),
            seen=seen_record(image, input_size, input_size != image.size, len(positions), budget, preset),
        )
