"""Helpers shared by the family adapters: patch grids and the image as the model sees it."""

from __future__ import annotations

import math

import numpy as np
import torch


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
