"""Compare fixes: every method's answer, the attention its answer tokens give the visual sinks and the image, its
first answer token's probability, and its map of one layer and head beside the baseline's, on one colour scale.

The masses are read from the attention each run *used* (`attn_to_visual`), so a method that acts after the softmax
(VAR) counts like one that acts before it (PAI, VAF); `Trace.visual_mass` / `sink_mass` are measured before VAR.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from var_core.interventions.effects import answer_change
from var_core.trace import Trace, answer_rows, take_rows
from viz.canvas import BACKGROUND, INK, colorbar, font, hstack, text_size, titled
from viz.colors import DIVERGING, value_range
from viz.diff import DIFF_COLORS
from viz.heatmap import blend
from viz.queries import attention_map, head_label, view_of

TABLE_HEADERS = ["method", "answer", "= baseline", "1st token", "p", "p(baseline's)", "Δp(baseline's)",
                 "on visual sinks", "on image"]  # p: of the first answer token; the last two: shares of attention
MAP_SIDE = 160  # px, the short side of each map: a row of label + 3 maps + 2 bars stays under 1000 px
LABEL_WIDTH = 215
CHANGED = DIFF_COLORS["removed"]  # the mark of an answer that differs from the baseline's


def _mean(values: np.ndarray) -> float | None:
    """The mean in float32 as a float, None when there is nothing to average."""
    return float(values.mean(dtype=np.float32)) if values.size else None


def attention_masses(trace: Trace) -> tuple[float | None, float | None]:
    """(visual sinks, image): the share of attention the answer rows give the visual sink tokens of each layer and
    all visual tokens of the grid, in the attention the run used, mean over captured layers, heads and answer rows
    (None when no answer row was captured)."""
    rows = answer_rows(trace)
    if not len(rows):
        return None, None
    sinks = trace.visual_sinks[trace.layers_captured].astype(np.float32)  # [k, N_vis]
    sink_mass, image_mass = [], []
    for slot in range(len(sinks)):  # one layer at a time: no float32 copy of the whole array
        attention = take_rows(trace.attn_to_visual[slot:slot + 1], rows)[0].astype(np.float32)  # [H, R, N_vis]
        sink_mass.append(attention @ sinks[slot])
        image_mass.append(attention.sum(-1))
    return _mean(np.stack(sink_mass)), _mean(np.stack(image_mass))


def token_probability(trace: Trace, token: str | None) -> float | None:
    """The probability `trace` gave `token` as its first answer token, when it is among its 5 likeliest (else
    None: below the fifth)."""
    top = trace.first_top()
    if top is None or token is None:
        return None
    return next((p for candidate, p in top if candidate == token), None)


def fix_row(trace: Trace, baseline: Trace) -> dict:
    """What one run did, as numbers: answer, whether it is the baseline's, first token and its probability, the
    probability of the baseline's first token, and the two attention masses."""
    top, base_top = trace.first_top(), baseline.first_top()
    first, p_first = top[0] if top else (None, None)
    base_first = base_top[0][0] if base_top else None
    sinks, image = attention_masses(trace)
    recorded = trace.top_probs is not None and baseline.top_probs is not None and len(trace.top_probs) > 0 < len(
        baseline.top_probs)
    return {"answer": trace.answer, "same_as_baseline": trace.answer == baseline.answer,
            "first_token": first, "first_token_probability": p_first, "first_token_top5": top,
            "baseline_first_token": base_first, "baseline_first_token_probability": token_probability(trace, base_first),
            "answer_token_change": answer_change(baseline, trace).change if recorded else None,
            "visual_sink_mass": sinks, "visual_mass": image}


def _number(value: float | None) -> str:
    return "—" if value is None else (f"{value:.3f}" if value >= 1e-3 else f"{value:.1e}")


def _delta(value: float | None, reference: float | None) -> str:
    if value is None or reference is None:
        return ""
    return f" ({value - reference:+.3f})"


def fixes_table(rows: dict[str, dict], titles: dict[str, str]) -> list[list]:
    """Rows for `TABLE_HEADERS`: one per method, the baseline first, masses with their change from the baseline."""
    base = rows["baseline"]
    return [[titles.get(name, name), row["answer"], "yes" if row["same_as_baseline"] else "no",
             repr(row["first_token"]) if row["first_token"] is not None else "—",
             _number(row["first_token_probability"]), _number(row["baseline_first_token_probability"]),
             "" if name == "baseline" or row["answer_token_change"] is None else f"{row['answer_token_change']:+.3f}",
             _number(row["visual_sink_mass"]) + ("" if name == "baseline" else
                                                 _delta(row["visual_sink_mass"], base["visual_sink_mass"])),
             _number(row["visual_mass"]) + ("" if name == "baseline" else _delta(row["visual_mass"], base["visual_mass"]))]
            for name, row in rows.items()]


def _wrapped(text: str, width: int, size: int, lines: int) -> list[str]:
    """`text` in at most `lines` lines of at most `width` px, the last cut with … when it does not fit."""
    words, out, line = " ".join(str(text).split()).split(" "), [], ""
    for word in words:
        candidate = f"{line} {word}".strip()
        if text_size(candidate, size)[0] <= width or not line:
            line = candidate
        else:
            out.append(line)
            line = word
    out.append(line)
    if len(out) > lines:
        out, last = out[:lines], out[lines - 1]
        while last and text_size(last + " …", size)[0] > width:
            last = last[:-1]
        out[-1] = last.rstrip() + " …"
    return [line if text_size(line, size)[0] <= width else line[:max(1, width // size)] + "…" for line in out]


def _label(title: str, row: dict, base: dict, height: int, is_baseline: bool) -> Image.Image:
    """The row's words: method, answer (marked when it is not the baseline's), first token and its probability, the
    masses with their change from the baseline."""
    panel = Image.new("RGB", (LABEL_WIDTH, height), BACKGROUND)
    draw = ImageDraw.Draw(panel)
    y = 4
    draw.text((6, y), title, fill=INK, font=font(15))
    y += 22
    if not is_baseline:
        same = row["same_as_baseline"]
        draw.text((6, y), "same answer as the baseline" if same else "answer differs from the baseline",
                  fill=INK if same else CHANGED, font=font(12))
        y += 17
    for line in _wrapped(f"“{row['answer']}”", LABEL_WIDTH - 12, 13, 3):
        draw.text((6, y), line, fill=INK, font=font(13))
        y += 17
    y += 4
    first = row["first_token"]
    facts = [f"p(first token {first!r}) = {_number(row['first_token_probability'])}" if first is not None
             else "first-token probabilities not recorded"]
    if not is_baseline and row["baseline_first_token"] is not None and row["answer_token_change"] is not None:
        facts.append(f"p(baseline's {row['baseline_first_token']!r}) = "
                     f"{_number(row['baseline_first_token_probability'])} ({row['answer_token_change']:+.3f})")
    facts.append("visual sinks " + _number(row["visual_sink_mass"])
                 + ("" if is_baseline else _delta(row["visual_sink_mass"], base["visual_sink_mass"])))
    facts.append("image " + _number(row["visual_mass"])
                 + ("" if is_baseline else _delta(row["visual_mass"], base["visual_mass"])))
    for fact in facts:
        for line in _wrapped(fact, LABEL_WIDTH - 12, 12, 2):
            if y + 15 > height:
                return panel
            draw.text((6, y), line, fill=INK, font=font(12))
            y += 15
    return panel


def fixes_figure(traces: dict[str, Trace], titles: dict[str, str], layer: int, head: int | None = None,
                 query: int | str = "answer", view: str | None = None) -> Image.Image:
    """One row per run, the baseline first: its words (`fix_row`), the baseline's map at `layer` / `head` for
    `query`, the method's, and method − baseline; every map on one shared scale, every difference on one symmetric
    diverging scale. `traces`: method name → Trace of the same request, "baseline" among them."""
    if "baseline" not in traces:
        raise ValueError("compare fixes needs the baseline run among the traces")
    baseline = traces["baseline"]
    image = view_of(baseline, view)[0]
    maps = {name: attention_map(trace, layer, head, query, view=view) for name, trace in traces.items()}
    shapes = {values.shape for values in maps.values()}
    if len(shapes) != 1:
        raise ValueError(f"the runs' maps have different grids {sorted(shapes)}: they are not of one request")
    vmin, vmax = value_range(np.stack(list(maps.values())))
    diffs = {name: values - maps["baseline"] for name, values in maps.items() if name != "baseline"}
    changed = max([float(np.nanmax(np.abs(d))) for d in diffs.values()] + [0.0])
    bound = changed or 0.01 * vmax  # nothing changed at this layer and head: a small scale, all white

    def panel(values, low, high, cmap, alpha, name):
        return titled(Image.fromarray(blend(image, values, low, high, cmap, False, alpha, MAP_SIDE)), name, 12)

    base_panel = panel(maps["baseline"], vmin, vmax, "viridis", 0.6, "baseline")
    bar = colorbar(base_panel.height, vmin, vmax, "viridis", False, "attention")
    diff_bar = colorbar(base_panel.height, -bound, bound, DIVERGING, False, "Δ attention")
    rows_info = {name: fix_row(trace, baseline) for name, trace in traces.items()}
    rows = []
    for name in traces:
        label = _label(titles.get(name, name), rows_info[name], rows_info["baseline"], base_panel.height,
                       name == "baseline")
        if name == "baseline":
            rows.append(hstack([label, base_panel, bar], gap=8))
            continue
        diff = diffs[name]
        moved = float(np.nanmax(np.abs(diff)))
        rows.append(hstack([label, base_panel, panel(maps[name], vmin, vmax, "viridis", 0.6, titles.get(name, name)),
                            bar, panel(diff, -bound, bound, DIVERGING, 0.85,
                                       "difference" + ("" if moved else ": none")), diff_bar], gap=8))
    width = max(row.width for row in rows)
    gap = 10
    out = Image.new("RGB", (width, sum(row.height for row in rows) + gap * (len(rows) - 1)), BACKGROUND)
    y = 0
    draw = ImageDraw.Draw(out)
    for index, row in enumerate(rows):
        out.paste(row, (0, y))
        y += row.height
        if index < len(rows) - 1:
            draw.line((0, y + gap // 2, width, y + gap // 2), fill=(200, 200, 200))
            y += gap
    title = (f"Each method vs the baseline: layer {layer}, {head_label(head)}, mean over answer tokens"
             if query == "answer" else f"Each method vs the baseline: layer {layer}, {head_label(head)}")
    return titled(out, title + " — one colour scale for every map")
