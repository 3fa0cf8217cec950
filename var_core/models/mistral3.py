"""Mistral-3 and Pixtral adapter (`Mistral3ForConditionalGeneration`, e.g. Mistral-Small-3.1; and
`LlavaForConditionalGeneration` with a Pixtral vision tower, e.g. mistral-community/pixtral-12b).

The processor (`PixtralProcessor`) resizes the image keeping its aspect ratio so that its longest edge fits
`size["longest_edge"]` (1,540 px for Mistral-3, 1,024 for Pixtral-12B; a smaller image is not scaled), then
rounds each side up to a multiple of patch × merge (14 × 2 = 28 for Mistral-3, 16 × 1 for Pixtral-12B). The
Pixtral tower cuts it into patch × patch pixels at that size (no square crop, no padding for one image), and
Mistral-3's patch merger folds each merge × merge block of patches into one token (`spatial_merge_size`; LLaVA's
Pixtral has no merger: merge 1). The prompt's one `[IMG]` is expanded to rows of `[IMG]` tokens, one per merged
token, each row closed by `[IMG_BREAK]` and the last by `[IMG_END]`; the `[IMG]` tokens are the visual tokens (the
break and end tokens are text, as the model embeds them as text).

Visual-token budget: one token per (patch · merge)² pixels of the resized image, so the call's
`size["longest_edge"]` is the largest multiple of patch · merge, never above the processor's own, whose image fits
the budget (transformers' own resize arithmetic decides); an image too thin to keep one row and one column of
tokens is refused.

Grid provided: all visual tokens, (H / (patch · merge), W / (patch · merge)) rows × cols from `image_sizes`, raster
order (the tower flattens its patches row by row and the merger's `unfold` walks the merged blocks row by row; the
processor writes one row of `[IMG]` per row), drawn over the resized image rebuilt from `pixel_values`.

transformers 5.23's `PixtralProcessor` module imports one helper from the torchvision image processor, so without
torchvision it cannot be imported; `pixtral_processor()` imports it against the PIL image processor's copy of that
helper (the processor itself then runs on `PixtralImageProcessorPil`). The Mistral text model attends through
`AttentionInterface` and passes `sliding_window` to it, which the hook takes as already in the mask (where a config
sets a window, the generic path's window check applies; Mistral-Small-3.1's sets none).
"""

from __future__ import annotations

import importlib
import sys
import types

import numpy as np
import torch
from PIL import Image

from var_core.budget import refuse_below
from var_core.models.bundle import ModelBundle, PreparedInputs
from var_core.models.common import check_count, pixels_to_image, seen_record
from var_core.models.generic import GenericAdapter

PIXTRAL = "transformers.models.pixtral"


def pixtral_processor() -> type:
    """transformers' `PixtralProcessor` class, importable without torchvision.

    Its module imports `get_resize_output_image_size` from the torchvision image processor's module (for token
    counts only); where that module cannot be imported, a stand-in holding the PIL processor's same-named function
    (the same arithmetic) is in `sys.modules` just for the import, then removed, so that module still fails as usual
    for anyone else. `transformers.PixtralProcessor` stays the placeholder transformers makes without torchvision."""
    loaded = sys.modules.get(f"{PIXTRAL}.processing_pixtral")
    if loaded is not None:
        return loaded.PixtralProcessor
    try:
        return importlib.import_module(f"{PIXTRAL}.processing_pixtral").PixtralProcessor
    except ImportError as error:
        if "torchvision" not in str(error).lower():
            raise
    pil = importlib.import_module(f"{PIXTRAL}.image_processing_pil_pixtral")
    name = f"{PIXTRAL}.image_processing_pixtral"
    stand_in = types.ModuleType(name, "stand-in for the torchvision Pixtral image processor (var_core.models.mistral3)")
    stand_in.get_resize_output_image_size = pil.get_resize_output_image_size
    sys.modules.pop(f"{PIXTRAL}.processing_pixtral", None)  # a half-imported module from the failed attempt
    sys.modules[name] = stand_in
    try:
        return importlib.import_module(f"{PIXTRAL}.processing_pixtral").PixtralProcessor
    finally:
        if sys.modules.get(name) is stand_in:
            del sys.modules[name]
        parent = sys.modules.get(PIXTRAL)
        if parent is not None and parent.__dict__.get("image_processing_pixtral") is stand_in:
            del parent.__dict__["image_processing_pixtral"]


def longest_edge(image_processor) -> int:
    """The image processor's `size["longest_edge"]` (a dict or a SizeDict)."""
    size = image_processor.size
    return int(size["longest_edge"] if isinstance(size, dict) else size.longest_edge)


def resized_size(image: Image.Image, edge: int, unit: int) -> tuple[int, int]:
    """(height, width) the Pixtral processor gives `image` with `size["longest_edge"]` = edge and patch × merge =
    unit, by transformers' own arithmetic."""
    from transformers.image_utils import ChannelDimension
    from transformers.models.pixtral.image_processing_pil_pixtral import get_resize_output_image_size

    probe = np.zeros((image.height, image.width, 1), dtype=np.uint8)  # only its shape is read
    return get_resize_output_image_size(probe, size=(edge, edge), patch_size=(unit, unit),
                                        input_data_format=ChannelDimension.LAST)


def budget_edge(image: Image.Image, processor, budget: int, name: str) -> int:
    """The `longest_edge` that keeps `image` within `budget` tokens: the processor's own if it fits, else the
    largest multiple of patch · merge below it that does. Refuses a budget below one row and column of tokens."""
    unit = processor.patch_size * processor.spatial_merge_size
    cap = longest_edge(processor.image_processor)
    candidates = [cap, *range((cap - 1) // unit * unit, 0, -unit)]
    fewest = None
    for edge in candidates:
        height, width = resized_size(image, edge, unit)
        rows, cols = height // unit, width // unit
        if rows == 0 or cols == 0:
            break  # smaller edges only lose more
        if rows * cols <= budget:
            return edge
        fewest = rows * cols
    if fewest is None:
        raise ValueError(f"the {image.width}×{image.height} image is too thin for {name}: resized within "
                         f"{cap:,} px its short side keeps no row of {unit}-px tokens; crop it")
    refuse_below(budget, fewest, f"that {name} needs for the {image.width}×{image.height} image (its fewest "
                 "before the short side drops below one token)")
    raise AssertionError("unreachable: refuse_below raised")


def check_raster(positions: torch.Tensor, rows: int, cols: int) -> None:
    """The `[IMG]` positions are `rows` runs of `cols`, one text token (`[IMG_BREAK]`) between runs."""
    grid = positions.reshape(rows, cols)
    within = bool((grid[:, 1:] - grid[:, :-1] == 1).all())
    between = bool((grid[1:, 0] - grid[:-1, -1] == 2).all())
    if not (within and between):
        raise ValueError(f"the prompt's image tokens are not {rows} rows of {cols} separated by one break token; "
                         "the processor and model config do not match (patch size / spatial merge size)")


class Mistral3Adapter(GenericAdapter):
    """The generic path with the processor's longest edge capped by the budget; the merged-patch raster over the
    resized image from `image_sizes`."""

    family = "mistral3"

    def image_kwargs(self, bundle: ModelBundle, image: Image.Image, budget: int) -> dict:
        return {"size": {"longest_edge": budget_edge(image, bundle.processor, budget, bundle.name)}}

    def layout(self, bundle: ModelBundle, image: Image.Image, inputs: dict, positions: torch.Tensor, preset: str,
               budget: int) -> PreparedInputs:
        config = bundle.model.config
        unit = config.vision_config.patch_size * getattr(config, "spatial_merge_size", 1)  # LLaVA: no merger
        height, width = (int(v) for v in inputs["image_sizes"][0])
        rows, cols = height // unit, width // unit
        check_count(len(positions), rows * cols, f"image tokens ({rows} rows of {cols})")
        check_raster(positions, rows, cols)
        pixels = inputs["pixel_values"][0][:, :height, :width]  # batch padding, if any, off
        return PreparedInputs(
            inputs=inputs,
            visual_positions=positions,
            grid=(rows, cols),
            image=pixels_to_image(pixels, bundle.processor.image_processor),
            seen=seen_record(image, (width, height), (width, height) != image.size, len(positions), budget, preset),
        )


class PixtralLlavaAdapter(Mistral3Adapter):
    """LLaVA with a Pixtral tower (pixtral-12b): the same layout with one patch per token."""

    family = "pixtral"

