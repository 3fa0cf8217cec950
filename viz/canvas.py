"""PIL drawing helpers shared by the image views: fonts, titles, colour bars, panels side by side."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from viz.colors import lut, normalize

BACKGROUND = (255, 255, 255)
INK = (20, 20, 20)
SELECTION = ((0, 0, 0), (255, 255, 255))  # the user's selection: black outer, white inner line, plain on any colour
FONT_FILE = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"


@lru_cache(maxsize=8)
def font(size: int = 13) -> ImageFont.FreeTypeFont:
    """DejaVu Sans (shipped with matplotlib) at `size` px."""
    return ImageFont.truetype(str(FONT_FILE), size)


def text_size(text: str, size: int = 13) -> tuple[int, int]:
    """(width, height) of `text` in px."""
    left, top, right, bottom = font(size).getbbox(text)
    return right - left, bottom - top


def format_value(value: float) -> str:
    """A short tick label: 3 significant digits, scientific below 1e-3."""
    return f"{value:.1e}" if value and abs(value) < 1e-3 else f"{value:.3g}"


def title_height(size: int = 14) -> int:
    """Height in px of the title band `titled` adds above an image."""
    return text_size("Ag", size)[1] + 12


def titled(image: Image.Image, title: str, size: int = 14) -> Image.Image:
    """`image` with a title line above it, on a light background."""
    height = title_height(size)
    out = Image.new("RGB", (max(image.width, text_size(title, size)[0] + 12), image.height + height), BACKGROUND)
    ImageDraw.Draw(out).text((6, 5), title, fill=INK, font=font(size))
    out.paste(image, (0, height))
    return out


def frame_selection(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], width: int = 2) -> None:
    """Frame `box` (left, top, right, bottom, inclusive) as the selection: `SELECTION`'s lines, `width` px each."""
    left, top, right, bottom = box
    for inset, colour in zip((0, width), SELECTION):
        draw.rectangle((left + inset, top + inset, right - inset, bottom - inset), outline=colour, width=width)


def row_labels(draw: ImageDraw.ImageDraw, right: int, top: int, pitch: int, names: list[str], size: int,
               step: int = 1, selected: int | None = None) -> None:
    """Every `step`-th of `names` right-aligned at `right`, on rows `pitch` px apart from `top`; row `selected` always,
    white on black."""
    for row in range(0, len(names), step):
        if row != selected:
            draw.text((right, top + row * pitch + pitch // 2), names[row], fill=INK, font=font(size), anchor="rm")
    if selected is not None:
        xy = (right, top + selected * pitch + pitch // 2)
        left, upper, end, lower = draw.textbbox(xy, names[selected], font=font(size), anchor="rm")
        draw.rectangle((left - 3, upper - 2, end + 2, lower + 2), fill=SELECTION[0])
        draw.text(xy, names[selected], fill=SELECTION[1], font=font(size), anchor="rm")


def colorbar(height: int, vmin: float, vmax: float, cmap: str, log: bool = False, label: str = "",
             ticks: int = 5, marks: dict[str, float] | None = None) -> Image.Image:
    """A vertical colour bar `height` px tall with tick labels, an axis label and optional named marks (e.g. τ)."""
    bar_w, pad, size, edge = 16, 6, 12, 8
    inner = max(height - 2 * edge, 10)
    levels = np.linspace(1.0, 0.0, inner)
    if log:
        values = 10 ** (np.log10(vmin) + levels * (np.log10(vmax) - np.log10(vmin)))
        tick_values = 10 ** np.linspace(np.log10(vmax), np.log10(vmin), ticks)
    else:
        values = vmin + levels * (vmax - vmin)
        tick_values = np.linspace(vmax, vmin, ticks)
    table = lut(cmap)
    strip = table[(normalize(values, vmin, vmax, log) * (len(table) - 1)).round().astype(np.intp)]
    labels = [format_value(v) for v in tick_values] + list(marks or {})
    label_w = max(text_size(t, size)[0] for t in labels)
    label_h = text_size(label, size)[1] if label else 0
    out = Image.new("RGB", (pad + bar_w + 4 + label_w + pad + label_h + pad, inner + 2 * edge), BACKGROUND)
    out.paste(Image.fromarray(np.repeat(strip[:, None], bar_w, axis=1)), (pad, edge))
    draw = ImageDraw.Draw(out)
    draw.rectangle((pad, edge, pad + bar_w - 1, edge + inner - 1), outline=INK)

    def y_of(value: float) -> int:
        return edge + int(round((1.0 - float(normalize(np.array([value]), vmin, vmax, log)[0])) * (inner - 1)))

    mark_ys = [y_of(value) for value in (marks or {}).values()]
    for value, text in zip(tick_values, labels):
        y = y_of(value)
        if any(abs(y - mark_y) < size for mark_y in mark_ys):
            continue
        draw.line((pad + bar_w, y, pad + bar_w + 3, y), fill=INK)
        draw.text((pad + bar_w + 5, y), text, fill=INK, font=font(size), anchor="lm")
    for text, value in (marks or {}).items():
        y = y_of(value)
        draw.line((pad - 4, y, pad + bar_w + 3, y), fill=INK, width=2)
        draw.text((pad + bar_w + 5, y), text, fill=INK, font=font(size), anchor="lm")
    if label:
        text = Image.new("RGB", (text_size(label, size)[0] + 4, label_h + 6), BACKGROUND)
        ImageDraw.Draw(text).text((2, 0), label, fill=INK, font=font(size))
        text = text.rotate(90, expand=True)
        out.paste(text, (out.width - text.width - 2, max((out.height - text.height) // 2, 0)))
    return out


def hstack(images: list[Image.Image], gap: int = 10) -> Image.Image:
    """Images side by side, top-aligned, on a light background."""
    out = Image.new("RGB", (sum(i.width for i in images) + gap * (len(images) - 1), max(i.height for i in images)),
                    BACKGROUND)
    x = 0
    for image in images:
        out.paste(image, (x, 0))
        x += image.width + gap
    return out


def display_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """Scale (width, height) so the shorter side is `short_side` px."""
    scale = short_side / min(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))
