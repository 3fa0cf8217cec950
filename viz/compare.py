"""View 5: the same attention map before and after VAR, on one colour scale, plus their difference."""

from __future__ import annotations

import numpy as np
from PIL import Image

from var_core.trace import Trace
from viz.canvas import colorbar, hstack, titled
from viz.colors import DIVERGING, value_range
from viz.heatmap import blend
from viz.queries import attention_map, head_label, query_label, view_of


def compare_maps(image: np.ndarray, before: np.ndarray, after: np.ndarray, title: str, cmap: str = "viridis",
                 log: bool = False, alpha: float = 0.6, short_side: int = 288) -> Image.Image:
    """Plain arrays: `before` and `after` [rows, cols] over `image` on one shared scale, then after − before on a
    symmetric diverging scale (red = gained, blue = lost)."""
    if before.shape != after.shape:
        raise ValueError(f"before {before.shape} and after {after.shape} maps must have the same grid")
    vmin, vmax = value_range(np.stack([before, after]), None, None, log)
    panels = [titled(Image.fromarray(blend(image, values, vmin, vmax, cmap, log, alpha, short_side)), name, 13)
              for values, name in ((before, "before VAR"), (after, "after VAR"))]
    shared = colorbar(panels[0].height, vmin, vmax, cmap, log, "attention weight" + (" (log)" if log else ""))
    diff = after - before
    changed = float(np.nanmax(np.abs(diff)))
    bound = changed or 0.01 * vmax  # no change (e.g. a head VAR did not select): a small scale, all white
    diff_panel = titled(Image.fromarray(blend(image, diff, -bound, bound, DIVERGING, False, 0.85, short_side)),
                        "difference (after − before)" + ("" if changed else ": no change"), 13)
    diff_bar = colorbar(diff_panel.height, -bound, bound, DIVERGING, False, "Δ attention")
    return titled(hstack([panels[0], panels[1], shared, diff_panel, diff_bar], gap=8), title)


def before_after(trace: Trace, layer: int, head: int | None = None, query: int | str = "all", log: bool = False,
                 cmap: str = "viridis", view: str | None = None, **options) -> Image.Image:
    """attn_to_visual_raw vs attn_to_visual of one VAR Trace (same rows), shared scale, and the difference.

    view: a name of `trace.view_list` (None: the whole canvas). options: alpha, short_side (see compare_maps).
    ValueError for a baseline Trace (nothing was redistributed).
    """
    if trace.attn_to_visual_raw is None:
        raise ValueError("this Trace is a baseline run (no VAR), so it has no before/after: pass the VAR run's Trace")
    before = attention_map(trace, layer, head, query, raw=True, view=view)
    after = attention_map(trace, layer, head, query, raw=False, view=view)
    title = (f"Before / after VAR (p = {trace.settings.get('p')}): layer {layer}, {head_label(head)}, "
             f"{query_label(trace, query)}")
    return compare_maps(view_of(trace, view)[0], before, after, title, cmap, log, **options)
