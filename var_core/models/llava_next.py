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

Layout drawn: every visual token. Where each high-resolution token lies is read off the model's own
`pack_image_features`, fed features that carry their (row, col) in the stitched tiles: the unpadded (for
LLaVA-OneVision, possibly bilinearly shrunk) feature map is drawn over the matching crop of the stitched tiles'
pixels, each row's newline token in a dark column at its end, and the base view (side × side, e.g. 24 × 24 for
336-px CLIP-L/14) one cell to their right; CLS tokens kept by the "full" strategy go in a dark row below.
"""

from __future__ import annotations

import inspect

import numpy as np
import torch
from PIL import Image
from transformers.image_processing_utils import get_patch_output_size, select_best_resolution
from transformers.image_utils import ChannelDimension
from transformers.models.llava_next.modeling_llava_next import get_anyres_image_grid_shape, unpad_image

from var_core.budget import refuse_below
from var_core.models.bundle import ModelBundle, PreparedInputs
from var_core.layout import Block, compose, raster
from var_core.models.common import check_count, seen_record, tile_pictures
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


def stitched_tiles(tiles: np.ndarray, tile_rows: int, tile_cols: int) -> np.ndarray:
    """[n, h, w, 3] tiles cut row by row → the [rows·h, cols·w, 3] image they were cut from."""
    n, h, w, channels = tiles.shape
    return tiles.reshape(tile_rows, tile_cols, h, w, channels).transpose(0, 2, 1, 3, 4).reshape(
        tile_rows * h, tile_cols * w, channels)


def stitched_coordinates(tile_rows: int, tile_cols: int, side: int) -> torch.Tensor:
    """[R, C, 2] each cell's own (row, col) in the stitched tiles' feature map."""
    rows, cols = np.meshgrid(np.arange(tile_rows * side), np.arange(tile_cols * side), indexing="ij")
    return torch.tensor(np.stack([rows, cols], -1), dtype=torch.float32)


def unpadded_window(image_size, tile_rows: int, tile_cols: int, side: int) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) in feature cells of the stitched map that the model keeps (`unpad_image`)."""
    kept = unpad_image(stitched_coordinates(tile_rows, tile_cols, side).permute(2, 0, 1), image_size)
    return int(kept[0, 0, 0]), int(kept[1, 0, 0]), int(kept[0, -1, 0]) + 1, int(kept[1, 0, -1]) + 1


def packed_shape(model, image_size, tile_rows: int, tile_cols: int, side: int) -> tuple[int, int]:
    """(rows, cols + 1) of the high-resolution tokens as the model packs them (the last column: newlines), by
    running its own `pack_image_features` on coordinate features with a NaN newline."""
    coords = stitched_coordinates(tile_rows, tile_cols, side)
    tiles = coords.reshape(tile_rows, side, tile_cols, side, 2).permute(0, 2, 1, 3, 4).reshape(-1, side * side, 2)
    base = torch.zeros(1, side * side, 2)
    packing = model.model.pack_image_features
    options = {"image_newline": torch.full((2,), float("nan"))}
    if "vision_feature_select_strategy" in inspect.signature(packing).parameters:
        options["vision_feature_select_strategy"] = "default"
    if "vision_aspect_ratio" in inspect.signature(packing).parameters:
        options["vision_aspect_ratio"] = model.config.vision_aspect_ratio
    packed = packing(image_features=[torch.cat([base, tiles])], image_sizes=image_size[None], **options)[0][0]
    hires = packed[side * side:].numpy()
    rows = int(np.isnan(hires[:, 0]).sum())
    places = hires.reshape(rows, -1, 2)
    if not np.isnan(places[:, -1]).all() or np.isnan(places[:, :-1]).any():
        raise ValueError("the model's packing does not end each high-resolution row with one newline token")
    return places.shape[:2]


class LlavaNextAdapter(GenericAdapter):
    """The generic path with the image downscaled to the budget's pinpoint; the base view is the grid."""

    family = "llava_next"

    def images(self, bundle: ModelBundle, image: Image.Image, budget: int):
        return fit_budget(bundle.processor, image, budget, bundle.name)

    def layout(self, bundle: ModelBundle, image: Image.Image, inputs: dict, positions: torch.Tensor, preset: str,
               budget: int) -> PreparedInputs:
        processor, config = bundle.processor, bundle.model.config
        side = config.vision_config.image_size // config.vision_config.patch_size
        pixel_values = inputs["pixel_values"][0]  # [1 + tiles, 3, H, W]: base view, then the tiles row by row
        pictures = tile_pictures(pixel_values, processor.image_processor)
        input_size = (pictures.shape[2], pictures.shape[1])
        fitted = tuple(int(v) for v in inputs["image_sizes"][0].flip(0))  # (w, h) of the image the processor took
        seen = seen_record(image, input_size, input_size != image.size, len(positions), budget, preset,
                           padded=padding_text(processor, fitted), tiles=len(pictures) - 1)
        layout = self.canvas(bundle, inputs["image_sizes"][0], pictures, len(positions), side)
        return PreparedInputs.laid_out(inputs, positions, layout, seen)

    def canvas(self, bundle: ModelBundle, image_size: torch.Tensor, pictures: np.ndarray, count: int, side: int):
        """The canvas: the high-resolution feature map over its pixels with its newline column, the base view beside
        it, any CLS tokens in a row below (`var_core.layout`)."""
        config = bundle.model.config
        base = base_view_slice(config, bundle.processor)
        base_view = Block(raster(side * side, side, side, base.start), pictures[0], 0, 0, "base view")
        if len(pictures) == 1:  # no tiles: the base view and the one newline the packing appends
            blocks = [base_view, Block(np.array([[base.stop]]), None, 0, side)]
        else:
            tile_rows, tile_cols = get_anyres_image_grid_shape(image_size, config.image_grid_pinpoints,
                                                               config.vision_config.image_size)
            rows, width = packed_shape(bundle.model, image_size, tile_rows, tile_cols, side)
            tokens = raster(rows * width, rows, width, base.stop)
            pitch = pictures.shape[1] // side
            top, left, bottom, right = (v * pitch for v in unpadded_window(image_size, tile_rows, tile_cols, side))
            crop = stitched_tiles(pictures[1:], tile_rows, tile_cols)[top:bottom, left:right]
            blocks = [Block(tokens[:, :-1], crop, 0, 0, "high-resolution tiles"),
                      Block(tokens[:, -1:], None, 0, width - 1),
                      Block(base_view.tokens, pictures[0], 0, width + 1, "base view")]
        rows = max(b.top + b.tokens.shape[0] for b in blocks)
        if base.start:  # CLS tokens kept before the base view ("full" strategy)
            blocks.append(Block(np.arange(base.start, dtype=np.int32)[None], None, rows + 1, 0))
        check_count(count, sum(b.tokens.size for b in blocks), "visual tokens laid out")
        return compose(blocks, cell=pictures.shape[1] // side)


class LlavaOnevisionAdapter(LlavaNextAdapter):
    """LLaVA-OneVision (`LlavaOnevisionForConditionalGeneration`): LLaVA-NeXT's anyres layout (base view first, no
    CLS token with SigLIP; tile features bilinearly shrunk beyond `anyres_max_9`), its own budget default."""

    family = "llava_onevision"
