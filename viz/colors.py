"""Colour lookup tables: values → uint8 RGB through a matplotlib colormap, linear or log, without drawing a figure."""

from __future__ import annotations

from functools import lru_cache

import matplotlib
import numpy as np

SEQUENTIAL = ("viridis", "inferno", "cividis", "magma")  # perceptually uniform, colour-blind safe
DIVERGING = "RdBu_r"  # ColorBrewer RdBu: colour-blind safe, centred on 0 for differences
OUTLINE = (213, 94, 0)  # Okabe–Ito vermillion: marks selected heads / sink tokens on a light background
LOG_FLOOR = 1e-4  # smallest value a log scale shows, relative to the scale's maximum


@lru_cache(maxsize=16)
def lut(name: str, n: int = 256) -> np.ndarray:
    """[n, 3] uint8 RGB table of the colormap `name`."""
    cmap = matplotlib.colormaps[name].resampled(n)
    return (cmap(np.arange(n))[:, :3] * 255).round().astype(np.uint8)


def value_range(values: np.ndarray, vmin: float | None = None, vmax: float | None = None,
                log: bool = False) -> tuple[float, float]:
    """The (vmin, vmax) a scale uses: given bounds, else the data's; positive and ordered for log scales."""
    finite = values[np.isfinite(values)]
    high = float(finite.max()) if vmax is None and finite.size else (1.0 if vmax is None else float(vmax))
    low = float(finite.min()) if vmin is None and finite.size else (0.0 if vmin is None else float(vmin))
    if log:
        high = max(high, np.finfo(np.float32).tiny)
        low = max(low, high * LOG_FLOOR)
    return (low, high) if high > low else (low, low + (abs(low) or 1.0) * 1e-6)


def normalize(values: np.ndarray, vmin: float, vmax: float, log: bool = False) -> np.ndarray:
    """Values → [0, 1] on a linear or log10 scale (clipped)."""
    values = np.asarray(values, dtype=np.float32)
    if log:
        low, high = np.log10(vmin), np.log10(vmax)
        values = np.log10(np.maximum(values, vmin))
    else:
        low, high = vmin, vmax
    return np.clip((values - low) / (high - low), 0.0, 1.0)


def colorize(values: np.ndarray, vmin: float, vmax: float, cmap: str = "viridis", log: bool = False) -> np.ndarray:
    """[...] values → [..., 3] uint8 RGB through the LUT of `cmap`."""
    table = lut(cmap)
    index = (normalize(values, vmin, vmax, log) * (len(table) - 1)).round().astype(np.intp)
    return table[index]
