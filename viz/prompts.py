"""View 11: two prompts on one image — φ with sinks and answer attention of each, the sinks they share, and the
sink overlap (Jaccard) per layer (paper: visual sinks sit at the same positions whatever the question)."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image, ImageDraw

from var_core.compare import SharedSinks, shared_sinks
from var_core.trace import Trace
from viz.canvas import BACKGROUND, INK, colorbar, font, hstack, text_size, titled
from viz.colors import OUTLINE, value_range
from viz.figures import NEUTRAL, OTHER, SELECTED, bars, key, new_figure, styled
from viz.heatmap import blend, upsample
from var_core.layout import on_cells
from viz.queries import attention_map, check_layer_head, layer_spans
from viz.sinks import frame_cells

PROMPT_CHARS = 50  # prompts are cut to this many characters in titles
SINK_COLOURS = {"both": OUTLINE, "only A": (0, 114, 178), "only B": (0, 158, 115)}  # Okabe–Ito vermillion/blue/green
PANEL_TITLE = 14  # px: panel titles and the legend (≥ 9 px when the figure shows 390 px wide)


def short_prompt(prompt: str, limit: int = PROMPT_CHARS) -> str:
    """`prompt` on one line (control characters and whitespace runs become one space), cut to `limit` with '…'."""
    text = " ".join("".join(c if c.isprintable() else " " for c in prompt).split())
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


def overlap_text(value: float | None) -> str:
    """'0.83', or 'n/a' when neither run has a visual sink."""
    return "n/a" if value is None or np.isnan(value) else f"{value:.2f}"


def stack(images: list[Image.Image], gap: int = 10) -> Image.Image:
    """Images one under the other, left-aligned, on a light background."""
    out = Image.new("RGB", (max(i.width for i in images), sum(i.height for i in images) + gap * (len(images) - 1)),
                    BACKGROUND)
    y = 0
    for image in images:
        out.paste(image, (0, y))
        y += image.height + gap
    return out


def legend(entries: list[tuple[str, tuple[int, int, int] | None]], size: int = PANEL_TITLE) -> Image.Image:
    """Lines of text, each after a colour swatch (None: no swatch)."""
    line = text_size("Ag", size)[1] + 10
    width = max(text_size(text, size)[0] for text, _ in entries) + size + 20
    out = Image.new("RGB", (width, line * len(entries) + 6), BACKGROUND)
    draw = ImageDraw.Draw(out)
    for index, (text, colour) in enumerate(entries):
        y = 6 + index * line
        if colour is not None:
            draw.rectangle((4, y, 4 + size, y + size), fill=colour, outline=INK)
        draw.text((size + 12, y), text, fill=INK, font=font(size))
    return out


def row(panels: list[Image.Image], titles: list[str], side: Image.Image) -> Image.Image:
    """Titled panels side by side, then `side` (a colour bar, a legend) aligned with the panels, below the titles."""
    titled_panels = [titled(panel, title, PANEL_TITLE) for panel, title in zip(panels, titles)]
    return hstack([*titled_panels, titled(side, "", PANEL_TITLE)], gap=8)


def phi_row(traces: dict[str, Trace], sinks: dict[str, np.ndarray], layer: int, short_side: int) -> Image.Image:
    """φ of each run's visual tokens entering `layer` on one scale, its sinks framed, and the φ colour bar with τ."""
    cells = next(iter(traces.values())).cell_map
    tau = float(next(iter(traces.values())).settings.get("tau", np.inf))
    phi = {name: on_cells(trace.phi_visual[layer], cells) for name, trace in traces.items()}
    vmax = float(max(max(np.nanmax(values) for values in phi.values()), tau * 1.05 if np.isfinite(tau) else 0.0))
    panels = []
    for name, trace in traces.items():
        panel = Image.fromarray(blend(trace.image, phi[name], 0.0, vmax, "cividis", False, 0.65, short_side))
        frame = int(np.clip(min(panel.size) // (8 * max(cells.shape)), 1, 3))
        panels.append(frame_cells(panel, on_cells(sinks[name], cells), cells.shape, width=frame))
    marks = {f"τ = {tau:g}": tau} if np.isfinite(tau) else None
    bar = colorbar(panels[0].height, 0.0, vmax, "cividis", False, "φ(x)", marks=marks)
    return row(panels, [f"{name}: φ, {int(sinks[name].sum())} sink(s)" for name in traces], bar)


def attention_row(traces: dict[str, Trace], layer: int, short_side: int, alpha: float) -> Image.Image:
    """Each run's attention of the answer rows at `layer` (mean over heads) on one scale, and its colour bar."""
    maps = {name: attention_map(trace, layer, None, "answer") for name, trace in traces.items()}
    low, high = value_range(np.stack(list(maps.values())))
    panels = [Image.fromarray(blend(traces[name].image, values, low, high, "viridis", False, alpha, short_side))
              for name, values in maps.items()]
    bar = colorbar(panels[0].height, low, high, "viridis", False, "attention")
    return row(panels, [f"{name}: attention, answer" for name in traces], bar)


def sink_classes(a: np.ndarray, b: np.ndarray, cells: np.ndarray, image: np.ndarray,
                 short_side: int) -> Image.Image:
    """The image in grey with each visual sink cell filled by its class: in both runs, only in A, only in B
    (`a`, `b` [N_vis] in token order, drawn at their `cells`)."""
    classes = on_cells(np.select([a & b, a, b], [1, 2, 3], 0), cells)
    grey = blend(image, np.zeros(cells.shape), 0.0, 1.0, alpha=0.0, short_side=short_side).astype(np.float32)
    pixels = upsample(classes, (grey.shape[1], grey.shape[0]))[..., None]
    for index, colour in enumerate(SINK_COLOURS.values(), start=1):
        grey = np.where(pixels == index, 0.25 * grey + 0.75 * np.array(colour, np.float32), grey)
    return Image.fromarray(grey.round().astype(np.uint8))


def shared_row(shared: SharedSinks, layer: int, image: np.ndarray, cells: np.ndarray, short_side: int) -> Image.Image:
    """The sinks of `layer` by class over the image, and a legend with each class's count and the layer's Jaccard."""
    slot = shared.at(layer)
    a, b = shared.a[slot], shared.b[slot]
    counts = {"both": int((a & b).sum()), "only A": int((a & ~b).sum()), "only B": int((b & ~a).sum())}
    entries = [(f"{name}: {count}", SINK_COLOURS[name]) for name, count in counts.items()]
    entries.append((f"Jaccard at layer {layer}: {overlap_text(shared.jaccard[slot])}", None))
    return row([sink_classes(a, b, cells, image, short_side)], ["sinks: shared or not"], legend(entries))


def prompt_comparison(trace_a: Trace, trace_b: Trace, layer: int, side: int = 200, alpha: float = 0.6) -> Image.Image:
    """Prompt A and B at `layer`: φ of the visual tokens with sinks framed (one scale), attention of the answer rows
    (mean over heads, one scale), and the sinks both share vs only A's vs only B's, titled with both prompts and
    the overlap. Pass the baseline Traces to see the model's own attention, the VAR ones to see it after VAR.
    `side`: the long side of each panel in px. ValueError for different images or a layer without attention."""
    shared = shared_sinks(trace_a, trace_b)
    check_layer_head(trace_a, layer)
    height, width = trace_a.image.shape[:2]
    short_side = max(1, round(side * min(height, width) / max(height, width)))
    slot = shared.at(layer)
    traces = {"A": trace_a, "B": trace_b}
    body = stack([phi_row(traces, {"A": shared.a[slot], "B": shared.b[slot]}, layer, short_side),
                  attention_row(traces, layer, short_side, alpha),
                  shared_row(shared, layer, trace_a.image, trace_a.cell_map, short_side)])
    lines = [f"Two prompts, one image: layer {layer}", f"A: {short_prompt(trace_a.prompt)}",
             f"B: {short_prompt(trace_b.prompt)}",
             f"sink overlap {overlap_text(shared.overlap)} (Jaccard over VAR layers {layer_spans(shared.var_layers)})"]
    for line in reversed(lines):
        body = titled(body, line, 15)
    return body


def mpl_text(text: str) -> str:
    """Text safe for a matplotlib label: '$' escaped, so it is not read as mathtext."""
    return text.replace("$", r"\$")


@styled
def overlap_by_layer(trace_a: Trace, trace_b: Trace, layer: int | None = None) -> Figure:
    """Bar per layer: Jaccard overlap of A's and B's visual sinks (blue: VAR layers; vermillion: `layer`); a grey
    mark at 0 where neither run has a visual sink. ValueError for different images."""
    shared = shared_sinks(trace_a, trace_b)
    jaccard = shared.jaccard
    colours = [SELECTED if index == layer else OTHER if index in shared.var_layers else NEUTRAL
               for index in shared.layers]
    figure = new_figure(max(4.6, 0.16 * len(jaccard) + 1.2), 2.9, top=0.95, bottom=0.55)
    axes = figure.add_subplot()
    bars(axes, np.nan_to_num(jaccard), colours)
    empty = np.nonzero(np.isnan(jaccard))[0]
    axes.plot(empty, np.zeros(len(empty)), linestyle="none", marker="x", color=NEUTRAL, clip_on=False)
    axes.set_ylim(0.0, 1.3)  # room above the bars for the key
    axes.set_yticks([0.0, 0.5, 1.0])
    axes.set_xlabel("layer" + ("" if layer is None else f" (vermillion: layer {layer})"))
    axes.set_ylabel("Jaccard A ∩ B / A ∪ B")
    key(axes, [("VAR layer", OTHER), ("× no visual sink", NEUTRAL)], corner="upper left")
    axes.xaxis.set_major_locator(MaxNLocator(10, integer=True))
    figure.text(0.01, 0.985, f"Visual sink overlap per layer: {overlap_text(shared.overlap)} over VAR layers",
                va="top", fontsize=10)
    figure.text(0.01, 0.9, mpl_text(f"A: {short_prompt(trace_a.prompt)}\nB: {short_prompt(trace_b.prompt)}"),
                va="top", fontsize=9)
    return figure

