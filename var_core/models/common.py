"""Helpers shared by the family adapters: patch grids and the image as the model sees it."""

from __future__ import annotations

import math

import numpy as np
import torch

from var_core.layout import Block, compose, raster, tile_grid


def square_grid(n_tokens: int) -> tuple[int, int]:
    """(side, side) for a square patch grid; a clear error if the count is not a square."""
    side = math.isqrt(n_tokens)
    if side * side != n_tokens:
        raise ValueError(f"{n_tokens} visual tokens do not form a square grid; the adapter must give the grid shape")
    return side, side


def pixels_to_image(pixel_values: torch.Tensor, image_processor) -> np.ndarray:
    """Undo the processor's normalisation: [3, H, W] model input → [H, W, 3] uint8, exactly what the model saw."""
    mean = torch.tensor(image_processor.image_mean, dtype=torch.float32)[:, None, None]
    std = torch.tensor(image_processor.image_std, dtype=torch.float32)[:, None, None]
    pixels = pixel_values.float().cpu() * std + mean
    scale = getattr(image_processor, "rescale_factor", 1 / 255)
    return (pixels / scale).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


def token_positions(input_ids: torch.Tensor, token_ids) -> torch.Tensor:
    """[N] indices of `input_ids` ([T] or [1, T]) equal to any of `token_ids` (an int or a collection of ints)."""
    ids = input_ids.reshape(-1)
    wanted = torch.as_tensor([token_ids] if isinstance(token_ids, int) else list(token_ids), device=ids.device)
    return torch.isin(ids, wanted).nonzero().flatten()


def cast_floating(inputs: dict, dtype: torch.dtype) -> dict:
    """Floating-point inputs (pixel values) in the model's dtype; ids and masks untouched."""
    return {k: v.to(dtype) if torch.is_tensor(v) and v.is_floating_point() else v for k, v in inputs.items()}


def check_count(found: int, expected: int, what: str) -> None:
    """Raise a ValueError naming both numbers when the prompt and the image features disagree."""
    if found != expected:
        raise ValueError(f"found {found} {what} in the prompt but the processor's layout needs {expected}; "
                         "the processor and model config do not match (check image_seq_len / patch sizes)")


def image_only(processor_class: type) -> type:
    """`processor_class` (Qwen2-VL, InternVL, SmolVLM…) without its video processor.

    transformers 5 builds every sub-processor a processor's `__init__` names, and a video processor needs
    torchvision (even `video_processor=None` fails its class check without it). We only feed images, so this
    subclass — same class name, same behaviour for images — drops that one argument and keeps the others (with
    their defaults: `from_pretrained` only passes saved settings such as `image_seq_length` that `__init__` names);
    its `from_pretrained` then loads just the image processor and the tokenizer. It renders chat templates as
    `ProcessorMixin` does: SmolVLM's own `apply_chat_template` reads the missing video processor's frame settings.
    """
    import inspect

    from transformers import ProcessorMixin

    params = [p for name, p in inspect.signature(processor_class.__init__).parameters.items()
              if name not in ("self", "video_processor") and p.kind is p.POSITIONAL_OR_KEYWORD]
    defaults = {p.name: None if p.default is p.empty else p.default for p in params}
    header = ", ".join(f"{p.name}=_defaults[{p.name!r}]" for p in params)
    forward = ", ".join(f"{p.name}={p.name}" for p in params)
    namespace = {"_defaults": defaults, "_parent": processor_class}
    exec(f"def __init__(self, {header}, **kwargs):\n"
         f"    _parent.__init__(self, video_processor=None, {forward}, **kwargs)\n", namespace)
    return type(processor_class.__name__, (processor_class,),
                {"__init__": namespace["__init__"], "__module__": processor_class.__module__,
                 "__doc__": image_only.__doc__, "apply_chat_template": ProcessorMixin.apply_chat_template})


def tiles_beside_global(tiles: np.ndarray, tile_rows: int, tile_cols: int, per_side: tuple[int, int],
                        tiles_start: int, global_pixels: np.ndarray, global_start: int, global_name: str):
    """The canvas of a tiled model (`var_core.layout`): its `tile_rows` × `tile_cols` tiles ([n, h, w, 3] uint8,
    cut row by row, tokens from `tiles_start`) put back together, and its global view (tokens from `global_start`)
    one cell to their right; each a raster of `per_side` tokens. Views: every tile, "all tiles", `global_name`."""
    blocks = tile_grid(tiles, tile_rows, tile_cols, per_side, tiles_start)
    rows, cols = per_side
    global_view = Block(raster(rows * cols, rows, cols, global_start), global_pixels, 0, tile_cols * cols + 1,
                        global_name)
    return compose(blocks + [global_view], groups={"all tiles": [b.view for b in blocks]})


def tile_pictures(pixel_values: torch.Tensor, image_processor) -> np.ndarray:
    """[n, 3, H, W] normalised tiles → [n, H, W, 3] uint8, as the model saw them."""
    return np.stack([pixels_to_image(tile, image_processor) for tile in pixel_values])


# ---------------------------------------------------------------- presets
PRESETS = ("hub", "paper")  # hub: the processor and chat template as published; paper: the VAR authors' LLaVA-1.5
PRESET_SETTING = "preset"  # the key in ModelBundle.extra


def paper_preset_problem(bundle) -> str | None:
    """Why `bundle` cannot run the "paper" preset, or None: it reproduces the authors' LLaVA-1.5 (Vicuna) only."""
    if bundle.adapter.family != "llava":
        return f"{bundle.name} is a {bundle.adapter.family} model"
    if not getattr(bundle.adapter, "paper_preset", False):
        return f"{bundle.name} was trained with its own chat template"
    if bundle.text_config.model_type != "llama":
        return f"{bundle.name} has a {bundle.text_config.model_type} language model, not Vicuna (LLaMA)"
    return None


def check_preset(bundle, preset: str) -> str:
    """`preset` when `bundle` can run it; a ValueError for unknown presets and for "paper" outside LLaVA-1.5."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {list(PRESETS)}")
    problem = paper_preset_problem(bundle) if preset == "paper" else None
    if problem:
        raise ValueError(f'the "paper" preset (pad to square + vicuna_v1 prompt, as the VAR authors ran LLaVA-1.5) '
                         f'is for LLaVA-1.5 only: {problem}; use preset "hub"')
    return preset


def preset_of(bundle) -> str:
    """The preset this request runs: `bundle.extra["preset"]`, default "hub" (checked by `check_preset`)."""
    return check_preset(bundle, bundle.extra.get(PRESET_SETTING) or "hub")


# ---------------------------------------------------------------- what the model saw
def seen_record(image, input_size, resized: bool, visual_tokens: int, budget: int | None, preset: str,
                cropped: str | None = None, padded: str | None = None, tiles: int | None = None) -> dict:
    """`PreparedInputs.seen`: the user's image size, the size of the view the grid is drawn on (`input_size`, the
    base/global view of tiled models, plus `tiles` high-resolution tiles), and what was done to get there (padding
    the user asked for, `var_core.images.pad_to_square`, included)."""
    seen = {"original_size": [image.width, image.height], "input_size": [int(v) for v in input_size],
            "resized": bool(resized), "cropped": cropped, "padded": padded or image.info.get("padded"),
            "visual_tokens": int(visual_tokens),
            "visual_token_budget": budget, "preset": preset}
    if tiles is not None:
        seen["tiles"] = int(tiles)
    if image.info.get("upload_size"):  # var_core.images.prepare_image downscaled the upload before the model
        seen["upload_size"] = list(image.info["upload_size"])
    return seen


def describe_seen(seen: dict) -> str:
    """One sentence for the UI: input size, from what, what was done (resized, cropped, padded), token count."""
    if not seen:
        return ""
    width, height = seen["input_size"]
    tiles = seen.get("tiles") or 0
    view = f"{width}×{height}" + (f" view + {tiles} tile{'s' * (tiles != 1)}" if tiles else "")
    source = "{}×{}".format(*seen["original_size"])
    if seen.get("upload_size"):
        source = "{}×{} (downscaled to {} on upload)".format(*seen["upload_size"], source)
    steps = [step for step in ("resized" if seen["resized"] else None, seen["cropped"], seen["padded"]) if step]
    budget = seen.get("visual_token_budget")
    tokens = f"{seen['visual_tokens']:,} visual tokens" + (f" (budget {budget:,})" if budget else "")
    preset = " (paper preset)" if seen.get("preset") == "paper" else ""
    note = f" Note: {seen['grid_note']}." if seen.get("grid_note") else ""
    return f"Model input {view} from {source}{preset}: {', '.join(steps) or 'unchanged'}; {tokens}.{note}"


def mean_colour(image_processor) -> tuple[int, ...]:
    """The processor's mean as 0–255 ints, as `expand2square` is called in LLaVA's `process_images`."""
    return tuple(int(x * 255) for x in image_processor.image_mean)


def padding_colour(bundle) -> tuple[int, int, int]:
    """What to pad an image to a square with: the processor's mean colour (as LLaVA pads), mid-grey without one."""
    image_processor = getattr(bundle.processor, "image_processor", None)
    mean = getattr(image_processor, "image_mean", None)
    return mean_colour(image_processor)[:3] if mean is not None and len(mean) >= 3 else (127,) * 3
