"""View 10: explanation maps side by side, one row per run (baseline, VAR), one column per method (raw attention,
relevancy, relative attention, activation map), each cell the map over the image on one shared layout."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from viz.canvas import BACKGROUND, INK, colorbar, font, format_value, text_size, titled
from viz.heatmap import blend
from viz.sinks import frame_cells

GAP, SIZE = 8, 13  # px between cells, px of the header and note text


def check_maps(maps: dict[str, dict[str, np.ndarray]]) -> list[str]:
    """The methods, in the first run's order; ValueError unless every run has the same methods, each a 2-D map of
    one shared shape."""
    if not maps or not all(maps.values()):
        raise ValueError("maps must name at least one run, each with at least one method: {run: {method: map}}")
    methods = list(next(iter(maps.values())))
    shape = np.shape(next(iter(maps.values()))[methods[0]])
    for run, by_method in maps.items():
        if set(by_method) != set(methods):
            raise ValueError(f"run {run!r} has methods {sorted(by_method)}; every run needs the same ones: "
                             f"{sorted(methods)}")
        for method, values in by_method.items():
            if np.ndim(values) != 2 or np.shape(values) != shape:
                raise ValueError(f"maps[{run!r}][{method!r}] has shape {np.shape(values)}; every map must be 2-D "
                                 f"[rows, cols] with the same grid, here {shape}")
    return methods


def compare_methods(image: np.ndarray, maps: dict[str, dict[str, np.ndarray]], title: str, cmap: str = "viridis",
                    alpha: float = 0.6, short_side: int = 200,
                    sinks: dict[str, np.ndarray] | None = None) -> Image.Image:
    """`image` [H, W, 3] uint8 with each `maps[run][method]` [rows, cols] (non-negative) over it: runs in dict order
    as rows, methods in the first run's order as columns. Each map is divided by its own maximum (the methods'
    scales differ), so colours compare where a map looks, not how much; each cell notes its map's maximum.
    sinks: per run, [rows, cols] bool visual sink patches, framed in every cell of that run (how much a map rests
    on sinks shows at a glance)."""
    methods = check_maps(maps)
    grid = np.shape(next(iter(maps.values()))[methods[0]])
    for run, cells in (sinks or {}).items():
        if run not in maps or np.shape(cells) != grid:
            raise ValueError(f"sinks[{run!r}] must be a [rows, cols] = {grid} mask of a run in maps ({list(maps)})")
    cells = {(run, method): np.asarray(values, dtype=np.float32) for run, by_method in maps.items()
             for method, values in by_method.items()}
    peaks = {name: float(np.nanmax(values)) for name, values in cells.items()}  # NaN: no token (between views)
    panels = {name: blend(image, values / peaks[name] if peaks[name] > 0 else values, 0.0, 1.0, cmap, False, alpha,
                          short_side) for name, values in cells.items()}
    height, width = next(iter(panels.values())).shape[:2]
    line = text_size("Ag", SIZE)[1] + 8
    column = max(width, *(text_size(method, SIZE)[0] + 8 for method in methods))
    left = max(text_size(run, SIZE)[0] for run in maps) + 12
    pitch = height + line + GAP  # a run's row: panel, note of the map's maximum, gap (method headers above the first)
    out = Image.new("RGB", (left + len(methods) * (column + GAP), line + len(maps) * pitch), BACKGROUND)
    draw = ImageDraw.Draw(out)
    for j, method in enumerate(methods):
        draw.text((left + j * (column + GAP) + column // 2, line // 2), method, fill=INK, font=font(SIZE), anchor="mm")
    for i, run in enumerate(maps):
        y = line + i * pitch
        draw.text((left - 8, y + height // 2), run, fill=INK, font=font(SIZE), anchor="rm")
        for j, method in enumerate(methods):
            x = left + j * (column + GAP) + (column - width) // 2
            panel = Image.fromarray(panels[run, method])
            if sinks is not None and run in sinks:
                frame_cells(panel, np.asarray(sinks[run], dtype=bool), grid, width=2)
            out.paste(panel, (x, y))
            draw.text((x + width // 2, y + height + line // 2), f"max {format_value(peaks[run, method])}", fill=INK,
                      font=font(SIZE - 1), anchor="mm")
    bar = colorbar(max(120, min(out.height - line, 400)), 0.0, 1.0, cmap, False, "map / its own max")
    full = Image.new("RGB", (out.width + bar.width, max(out.height, line + bar.height)), BACKGROUND)
    full.paste(out, (0, 0))
    full.paste(bar, (out.width, line))
    note = "each map scaled to its own maximum (methods differ in scale): compare where, not how much"
    if sinks is not None:
        note += "; framed: visual sink patches"
    return titled(titled(full, note, 12), title)
