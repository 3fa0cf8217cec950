"""View 4: heads ranked by visual non-sink ratio r (then visual mass), with the selection thresholds."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from var_core.trace import Trace
from viz.figures import NEUTRAL, SELECTED, bars, new_figure, reference_line, styled
from viz.queries import head_stats, layers_note, query_label, selected_heads

TABLE_HEADERS = ["rank", "layer", "head", "r", "visual mass", "selected"]


def ranked_heads(trace: Trace, query: int | str = "all") -> list[dict]:
    """Every (layer, head) of the captured layers, best first: heads with visual mass ≥ min_visual_mass before the
    rest (r means little when a head hardly looks at the image), then r descending, then visual mass descending;
    over `query` rows. "layer" is the model layer."""
    ratio, mass = head_stats(trace, query)
    chosen = selected_heads(trace, query)
    looks = mass >= trace.settings.get("min_visual_mass", 0.2)
    order = np.lexsort((-mass.ravel(), -ratio.ravel(), ~looks.ravel()))
    slots, heads = np.unravel_index(order, ratio.shape)
    layers = trace.layers_captured
    return [{"layer": int(layers[slot]), "head": int(head), "r": float(ratio[slot, head]),
             "visual_mass": float(mass[slot, head]), "selected": bool(chosen[slot, head])}
            for slot, head in zip(slots, heads)]


def top_heads_table(trace: Trace, k: int = 10, query: int | str = "all") -> list[list]:
    """The first `k` ranked heads as table rows matching TABLE_HEADERS (values rounded for display)."""
    return [[rank + 1, row["layer"], row["head"], round(row["r"], 3), round(row["visual_mass"], 3),
             "yes" if row["selected"] else "no"] for rank, row in enumerate(ranked_heads(trace, query)[:k])]


@styled
def head_ranking(trace: Trace, query: int | str = "all", top: int = 24) -> Figure:
    """Bars of r for the `top` best-ranked heads (selected heads in vermillion) with their visual mass as black
    dots; dashed line at ρ, dotted at the visual-mass threshold."""
    ranked = ranked_heads(trace, query)
    shown = ranked[:top]
    rho = trace.settings.get("rho", 0.5)
    min_mass = trace.settings.get("min_visual_mass", 0.2)
    figure = new_figure(max(5.5, 0.22 * len(shown) + 2.2), 3.6, right=1.5, bottom=0.7, top=0.55)
    axes = figure.add_subplot()
    bars(axes, [row["r"] for row in shown], [SELECTED if row["selected"] else NEUTRAL for row in shown])
    axes.plot(np.arange(len(shown)), [row["visual_mass"] for row in shown], "o", color="#141414", markersize=4)
    axes.set_ylim(0, 1.05)
    axes.set_yticks([0, 0.25, 0.5, 0.75, 1])
    reference_line(axes, rho, f"ρ = {rho:g}")
    reference_line(axes, min_mass, f"min visual\nmass = {min_mass:g}", ":")
    axes.set_ylabel("bars: non-sink ratio r\ndots: visual mass")
    axes.set_xticks([])
    for index, row in enumerate(shown):
        axes.text(index, -0.03, f"L{row['layer']}H{row['head']}", rotation=90, ha="center", va="top",
                  fontsize=8, transform=axes.get_xaxis_transform())
    count = sum(row["selected"] for row in ranked)
    scope = f"top {len(shown)} of {len(ranked)}" if len(shown) < len(ranked) else f"all {len(ranked)}"
    figure.text(0.01, 0.99, f"Heads ranked by r, those with visual mass ≥ {min_mass:g} first ({scope})"
                f"{layers_note(trace)}\n"
                f"{query_label(trace, query)}; vermillion = image-centric (selected), {count} heads",
                va="top", fontsize=10)
    return figure
