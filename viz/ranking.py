"""View 4: heads ranked by visual non-sink ratio r, the heads VAR acts on first, each other head with why it is left."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from var_core.trace import Trace
from viz.figures import NEUTRAL, SELECTED, bars, new_figure, reference_line, styled
from viz.queries import acting_layers, head_stats, layer_spans, layers_note, query_label, var_heads, var_layers

TABLE_HEADERS = ["rank", "layer", "head", "r", "visual mass", "VAR acts"]
IDLE = "#DDDDDD"  # heads of layers VAR leaves untouched: there r is 1 by definition (no visual sink)


def head_status(trace: Trace, query: int | str = "all") -> np.ndarray:
    """[k, H] why VAR acts on each captured head or not: 'yes', or 'no: <first reason>' (layer outside the VAR
    layers, no visual sink in the layer, too little visual mass, r < ρ, or no single `query` row passing both)."""
    ratio, mass = head_stats(trace, query)
    rho, min_mass = trace.settings.get("rho", 0.5), trace.settings.get("min_visual_mass", 0.2)
    in_var = np.isin(trace.layers_captured, var_layers(trace))[:, None]
    acting = acting_layers(trace)[:, None]
    chosen = var_heads(trace, query)
    reasons = [(chosen, "yes"), (~in_var, f"no: layer outside VAR ({layer_spans(var_layers(trace))})"),
               (~acting, "no: no visual sink in layer"), (mass < min_mass, f"no: visual mass < {min_mass:g}"),
               (ratio < rho, f"no: r < ρ = {rho:g}")]
    return np.select([np.broadcast_to(mask, ratio.shape) for mask, _ in reasons], [text for _, text in reasons],
                     "no: no row passes both")


def ranked_heads(trace: Trace, query: int | str = "all") -> list[dict]:
    """Every (layer, head) of the captured layers, best first: the heads VAR acts on (image-centric in a layer with
    a visual sink among the VAR layers), then the other heads of those layers with visual mass ≥ min_visual_mass,
    then the rest of them, then the heads of layers VAR leaves untouched; within each, r then visual mass
    descending, over `query` rows. "layer" is the model layer; "selected": VAR acts on it; "status": see
    `head_status`."""
    ratio, mass = head_stats(trace, query)
    status = head_status(trace, query)
    chosen = status == "yes"
    acting = np.broadcast_to(acting_layers(trace)[:, None], ratio.shape)
    looks = mass >= trace.settings.get("min_visual_mass", 0.2)
    group = np.where(chosen, 0, np.where(acting, np.where(looks, 1, 2), 3))
    order = np.lexsort((-mass.ravel(), -ratio.ravel(), group.ravel()))
    slots, heads = np.unravel_index(order, ratio.shape)
    layers = trace.layers_captured
    return [{"layer": int(layers[slot]), "head": int(head), "r": float(ratio[slot, head]),
             "visual_mass": float(mass[slot, head]), "selected": bool(chosen[slot, head]),
             "status": str(status[slot, head])} for slot, head in zip(slots, heads)]


def selection_summary(trace: Trace, query: int | str = "all") -> str:
    """'38 image-centric (layer, head) pairs VAR acts on: layers 2–10 (VAR layers 2–28 with a visual sink)': the one
    count the chart, the table and the status line share."""
    chosen = var_heads(trace, query)
    acting = [layer for layer, act in zip(trace.layers_captured, acting_layers(trace)) if act]
    return (f"{int(chosen.sum())} image-centric (layer, head) pairs VAR acts on: layers {layer_spans(acting)} "
            f"(VAR layers {layer_spans(var_layers(trace))} with a visual sink)")


def top_heads_table(trace: Trace, k: int = 10, query: int | str = "all") -> list[list]:
    """The first `k` ranked heads as table rows matching TABLE_HEADERS (values rounded for display)."""
    return [[rank + 1, row["layer"], row["head"], round(row["r"], 3), round(row["visual_mass"], 3), row["status"]]
            for rank, row in enumerate(ranked_heads(trace, query)[:k])]


def bar_colour(row: dict) -> str:
    """Vermillion: VAR acts on the head; grey: a head of a layer VAR acts on, not selected; pale: layer untouched."""
    if row["selected"]:
        return SELECTED
    return IDLE if row["status"].startswith(("no: layer", "no: no visual")) else NEUTRAL


@styled
def head_ranking(trace: Trace, query: int | str = "all", top: int = 16) -> Figure:
    """Bars of r for the `top` best-ranked heads (VAR's heads in vermillion, the other heads of its layers grey,
    heads of untouched layers pale) with their visual mass as black dots; dashed line at ρ, dotted at the
    visual-mass threshold; the title gives `selection_summary`."""
    ranked = ranked_heads(trace, query)
    shown = ranked[:top]
    rho = trace.settings.get("rho", 0.5)
    min_mass = trace.settings.get("min_visual_mass", 0.2)
    figure = new_figure(5.6, 4.6, right=1.15, bottom=0.75, top=1.3)
    axes = figure.add_subplot()
    bars(axes, [row["r"] for row in shown], [bar_colour(row) for row in shown])
    axes.plot(np.arange(len(shown)), [row["visual_mass"] for row in shown], "o", color="#141414", markersize=5)
    axes.set_ylim(0, 1.05)
    axes.set_yticks([0, 0.25, 0.5, 0.75, 1])
    reference_line(axes, rho, f"ρ = {rho:g}")
    reference_line(axes, min_mass, f"min visual\nmass = {min_mass:g}", ":")
    axes.set_ylabel("bars: r, mean over rows\ndots: visual mass")
    axes.set_xticks([])
    for index, row in enumerate(shown):
        axes.text(index, -0.03, f"L{row['layer']}H{row['head']}", rotation=90, ha="center", va="top",
                  fontsize=9 if len(shown) <= 20 else 7, transform=axes.get_xaxis_transform())
    summary = selection_summary(trace, query).replace(": layers", ":\nlayers")
    figure.text(0.01, 0.99, f"Heads ranked by r, those VAR acts on first (top {len(shown)} of {len(ranked)})"
                f"{layers_note(trace)}\n{summary}\n{query_label(trace, query)} (a head counts if one row passes)\n"
                "vermillion: VAR acts · grey: not selected · pale: layer untouched", va="top", fontsize=10)
    return figure
