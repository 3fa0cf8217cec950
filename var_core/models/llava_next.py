"""LLaVA-NeXT family adapter (`LlavaNextForConditionalGeneration`, llava-hf/llava-v1.6-*).

Token layout of one image (transformers' `pack_image_features`): first the base view — the whole image resized
to the vision tower's input size — as a raster of side × side patch tokens (after the CLS token when the
feature strategy is "full"), then the high-resolution tiles stitched into one unpadded feature map, each of its
rows closed by an `image_newline` token.

Visual-token budget: processor and model each pick the tile layout from `image_grid_pinpoints` and the image's
size (`select_best_resolution`), so the pinpoints cannot be changed for one call without the two disagreeing.
Instead an image over budget is downscaled to fit inside the largest pinpoint whose layout is within the budget
(counted by the processor's own `_get_num_multimodal_tokens`); a small image makes both pick that pinpoint or a
smaller one. The count depends on the aspect ratio: at least 576 + two tiles (≈ 1,180 tokens for a square photo,
≈ 1,370 for 4:3 with llava-v1.6's pinpoints); lower budgets are refused.

Grid provided: the base view (side × side, e.g. 24 × 24 for 336-px CLIP-L/14), drawn over the base view's pixels.
The tile tokens and newline tokens are visual tokens too (VAR's I_vis) but are not drawn.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from transformers.image_processing_utils import get_patch_output_size, select_best_resolution
from transformers.image_utils import ChannelDimension

from var_core.budget import refuse_below
from var_core.models.bundle import ModelBundle, PreparedInputs
from var_core.models.common import pixels_to_image, seen_record
from var_core.models.generic import GenericAdapter


def base_view_slice(config, processor) -> slice:
    """Which of the image's tokens are the base view's patch grid: a slice into its visual positions."""
    side = config.vision_config.image_size // config.vision_config.patch_size
    extra = getattr(processor, "num_additional_image_tokens", 0) or 0  # CLS tokens kept by the vision tower
    strategy = getattr(processor, "vision_feature_select_strategy", None) or config.vision_feature_select_strategy
    n_base = side * side + extra - (1 if strategy == "default" else 0)
    return slice(n_base - side * side, n_base)


def tokens_for(processor, size: tuple[int, int]) -> int:
    """Visual tokens the processor expands a (w, h) image into."""
    return processor._get_num_multimodal_tokens(image_sizes=[[size[1], size[0]]]).num_image_tokens[0]


def fitted_into(size: tuple[int, int], pinpoint) -> tuple[int, int]:
    """(w, h) of a (w, h) image scaled down (never up) to fit inside a pinpoint (h, w)."""
    scale = min(pinpoint[0] / size[1], pinpoint[1] / size[0], 1.0)
    return max(1, int(size[0] * scale)), max(1, int(size[1] * scale))


def fit_budget(processor, image: Image.Image, budget: int, name: str) -> Image.Image:
    """`image`, or `image` downscaled so that its tile layout stays within `budget` visual tokens."""
    if tokens_for(processor, image.size) <= budget:
        return image
    pinpoints = sorted(processor.image_processor.image_grid_pinpoints, key=lambda p: p[0] * p[1], reverse=True)
    sizes = [fitted_into(image.size, p) for p in pinpoints]
    counts = [tokens_for(processor, s) for s in sizes]
    fitting = [s for s, n in zip(sizes, counts) if n <= budget]
    if not fitting:
        refuse_below(budget, min(counts), f"{name} needs for a {image.width}×{image.height} image (base view + its "
                     "smallest tile layout)")
    return image.resize(fitting[0], Image.Resampling.BICUBIC)


def padding_text(processor, size: tuple[int, int]) -> str | None:
    """A sentence on how the processor padded the high-resolution view of a (w, h) image to its pinpoint."""
    pinpoint = select_best_resolution((size[1], size[0]), processor.image_processor.image_grid_pinpoints)
    height, width = get_patch_output_size(np.empty((0, size[1], size[0])), pinpoint, ChannelDimension.FIRST)
    dy, dx = pinpoint[0] - height, pinpoint[1] - width
    if not dx and not dy:
        return None
    sides = f"{dy // 2} px above and {dy - dy // 2} px below" if dy else \
        f"{dx // 2} px on the left and {dx - dx // 2} px on the right"
    return (f"high-resolution view fitted into {pinpoint[1]}×{pinpoint[0]} and padded with black, {sides} "
            "(the model drops the padded tokens)")


class LlavaNextAdapter(GenericAdapter):
    """The generic path with the image downscaled to the budget's pinpoint; the base view is the grid."""

    family = "llava_next"

    def images(self, bundle: ModelBundle, image: Image.Image, budget: int):
        return fit_budget(bundle.processor, image, budget, bundle.name)

    def layout(self, bundle: ModelBundle, image: Image.Image, inputs: dict, positions: torch.Tensor, preset: str,
               budget: int) -> PreparedInputs:
        processor, config = bundle.processor, bundle.model.config
        side = config.vision_config.image_size // config.vision_config.patch_size
        base = inputs["pixel_values"][0, 0]  # tile 0 = base view
        input_size = (base.shape[-1], base.shape[-2])
        fitted = tuple(int(v) for v in inputs["image_sizes"][0].flip(0))  # (w, h) of the image the processor took
        seen = seen_record(image, input_size, input_size != image.size, len(positions), budget, preset,
                           padded=padding_text(processor, fitted), tiles=inputs["pixel_values"].shape[1] - 1)
        return PreparedInputs(
            inputs=inputs,
            visual_positions=positions,
            grid=(side, side),
            grid_positions=positions[base_view_slice(config, processor)],
            image=pixels_to_image(base, processor.image_processor),
            seen=seen,
        )


class LlavaOnevisionAdapter(LlavaNextAdapter):
    """LLaVA-OneVision (`LlavaOnevisionForConditionalGeneration`): LLaVA-NeXT's anyres layout (base view first, no
    CLS token with SigLIP; tile features bilinearly shrunk beyond `anyres_max_9`), its own budget default."""

    family = "llava_onevision"
