"""View 6: the paper's evidence plots: φ vs attention (Fig. 3a), massive activations (Fig. 2), sink attention per layer."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from var_core.trace import Trace
from viz.figures import OTHER, SELECTED, log_y, new_figure, styled
from viz.queries import check_layer_head, query_label, query_rows

PROFILE_ROLES = ("first token (BOS)", "strongest visual sink candidate", "typical visual token")


def visual_attention(trace: Trace, query: int | str = "all") -> np.ndarray:
    """[L, N_vis] attention to each visual token before VAR, mean over heads and the `query` rows."""
    attn = trace.attn_to_visual if trace.attn_to_visual_raw is None else trace.attn_to_visual_raw
    return attn[:, :, query_rows(trace, query)].mean(axis=(1, 2))


@styled
def phi_attention_scatter(trace: Trace, layer: int, query: int | str = "all") -> Figure:
    """Each visual token at `layer`: φ(x) against the attention it receives (mean over heads, before VAR)."""
    check_layer_head(trace, layer)
    phi = trace.phi_visual[layer]
    attention = np.maximum(visual_attention(trace, query)[layer], 1e-8)
    sinks = trace.visual_sinks[layer]
    tau = trace.settings.get("tau", np.nan)
    figure = new_figure(5.2, 3.8, top=0.55)
    axes = figure.add_subplot()
    axes.scatter(phi[~sinks], attention[~sinks], s=14, color=OTHER, alpha=0.7, linewidths=0,
                 label=f"other visual tokens ({int((~sinks).sum())})")
    axes.scatter(phi[sinks], attention[sinks], s=28, color=SELECTED, marker="D", linewidths=0,
                 label=f"visual sinks, φ > τ ({int(sinks.sum())})")
    axes.axvline(tau, color="#141414", linestyle="--", linewidth=1)
    axes.text(tau, 1.0, f" τ = {tau:g}", transform=axes.get_xaxis_transform(), va="top", fontsize=9)
    log_y(axes)
    axes.set_xlabel("φ(x): sink-dimension value entering the layer")
    axes.set_ylabel("attention received (mean over heads)")
    axes.legend(loc="lower right", frameon=False)
    figure.text(0.01, 0.99, f"φ vs attention of visual tokens, layer {layer}\n{query_label(trace, query)}, "
                "before VAR", va="top", fontsize=10)
    return figure


@styled
def massive_activations(trace: Trace) -> Figure:
    """|x|/RMS(x) per hidden dimension at the profile layer for BOS, a visual sink and a normal visual token;
    sink dimensions annotated, τ drawn (φ is the largest of these values over the sink dimensions)."""
    profile = trace.profile_hidden
    dims = [int(d) for d in trace.settings.get("sink_dims", [])]
    tau = trace.settings.get("tau", np.nan)
    figure = new_figure(6.4, 5.2, top=0.45, hspace=0.55)
    top = float(profile.max()) * 1.15
    for row, (values, position, role) in enumerate(zip(profile, trace.profile_tokens, PROFILE_ROLES)):
        axes = figure.add_subplot(len(profile), 1, row + 1)
        stems = np.stack([np.zeros_like(values), values, np.full_like(values, np.nan)], 1).ravel()
        axes.plot(np.repeat(np.arange(len(values)), 3), stems, color=OTHER, linewidth=0.8)  # one path, D stems
        axes.axhline(tau, color="#141414", linestyle="--", linewidth=0.8)
        for dim in dims:
            if dim < len(values):
                axes.vlines(dim, 0, values[dim], color=SELECTED, linewidth=2)
                axes.annotate(f"d{dim}: {values[dim]:.1f}", (dim, values[dim]), xytext=(3, 2),
                              textcoords="offset points", fontsize=8, color=SELECTED)
        axes.set_xlim(-1, len(values))
        axes.set_ylim(0, top)
        axes.yaxis.set_major_locator(MaxNLocator(3))
        axes.set_ylabel("|x| / RMS")
        if row < len(profile) - 1:
            axes.set_xticks([])
        token = trace.tokens[int(position)].strip() if int(position) < len(trace.tokens) else "?"
        axes.text(0.0, 1.03, f"{role}: position {int(position)} {token!r}", transform=axes.transAxes, fontsize=10)
    axes.set_xlabel(f"hidden dimension (sink dims {dims} in vermillion; dashed: τ = {tau:g})")
    figure.text(0.01, 0.995, f"Massive activations entering layer {trace.profile_layer}", va="top", fontsize=10)
    return figure


@styled
def sink_attention_by_layer(trace: Trace, query: int | str = "all") -> Figure:
    """Per layer: mean attention a visual sink token receives vs a non-sink visual token (before VAR, mean over
    heads and `query` rows); layers without visual sinks leave a gap."""
    attention = visual_attention(trace, query)
    sinks = trace.visual_sinks
    count = sinks.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        to_sinks = np.where(count > 0, (attention * sinks).sum(1) / count, np.nan)
        to_others = (attention * ~sinks).sum(1) / np.maximum((~sinks).sum(1), 1)
    layers = np.arange(len(attention))
    figure = new_figure(max(5.0, 0.15 * len(layers) + 2.0), 3.2, top=0.55)
    axes = figure.add_subplot()
    axes.plot(layers, to_sinks, "D-", color=SELECTED, markersize=4, label="per visual sink token")
    axes.plot(layers, to_others, "o-", color=OTHER, markersize=3, label="per other visual token")
    log_y(axes)
    axes.set_xlabel("layer")
    axes.set_ylabel("attention per token")
    axes.legend(loc="best", frameon=False)
    figure.text(0.01, 0.99, f"Attention to visual sinks vs other visual tokens\n{query_label(trace, query)}, "
                "mean over heads, before VAR", va="top", fontsize=10)
    return figure
