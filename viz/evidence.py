"""View 6: the paper's evidence: φ vs attention (Fig. 3a), massive activations (Fig. 2), sink attention per layer,
φ by layer."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from var_core.layout import cell_of
from var_core.trace import Trace
from viz.figures import OTHER, SELECTED, few_ticks, key, log_y, new_figure, styled
from viz.queries import captured_slot, layers_note, query_label, query_rows, take_rows

PROFILE_ROLES = ("first token (BOS)", "strongest visual sink candidate", "typical visual token")
BOS_COLOUR = "#009E73"  # Okabe–Ito bluish green
EXTRA_COLOURS = ("#CC79A7", "#E69F00", "#56B4E9", "#141414")  # Okabe–Ito reddish purple, orange, sky blue; ink


def visual_attention(trace: Trace, query: int | str = "all", slots: slice = slice(None)) -> np.ndarray:
    """[k, N_vis] attention to each visual token before VAR at each captured layer (or those `slots` of the captured
    arrays), mean over heads and the `query` rows."""
    attn = trace.attn_to_visual if trace.attn_to_visual_raw is None else trace.attn_to_visual_raw
    return take_rows(attn[slots], query_rows(trace, query)).mean(axis=(1, 2), dtype=np.float32)


def sink_note(trace: Trace, layer: int) -> str:
    """'3 visual sinks at layer 4' or 'no visual sink at layer 15 (largest visual φ 8.6 ≤ τ)', for titles."""
    count = int(trace.visual_sinks[layer].sum())
    if count:
        return f"{count} visual sink{'s' if count > 1 else ''} at layer {layer}"
    return f"no visual sink at layer {layer} (largest visual φ {trace.phi_visual[layer].max():.1f} ≤ τ)"


@styled
def phi_attention_scatter(trace: Trace, layer: int, query: int | str = "all") -> Figure:
    """Each visual token at `layer` (any captured layer): φ(x) against the attention it receives (mean over heads,
    before VAR); the title says whether the layer has visual sinks."""
    slot = captured_slot(trace, layer)
    phi = trace.phi_visual[layer]
    attention = np.maximum(visual_attention(trace, query, slice(slot, slot + 1))[0], 1e-8)
    sinks = trace.visual_sinks[layer]
    tau = trace.settings.get("tau", np.nan)
    figure = new_figure(5.2, 4.0, top=0.75)
    axes = figure.add_subplot()
    axes.scatter(phi[~sinks], attention[~sinks], s=14, color=OTHER, alpha=0.7, linewidths=0)
    axes.scatter(phi[sinks], attention[sinks], s=28, color=SELECTED, marker="D", linewidths=0)
    axes.axvline(tau, color="#141414", linestyle="--", linewidth=1)
    axes.text(tau, 1.0, f"τ = {tau:g} ", transform=axes.get_xaxis_transform(), va="top", ha="right", fontsize=9)
    log_y(axes)
    axes.set_xlabel("φ(x): sink-dimension value entering the layer")
    axes.set_ylabel("attention received (mean over heads)")
    few_ticks(axes)
    key(axes, [(f"◆ visual sinks, φ > τ ({int(sinks.sum())})", SELECTED),
               (f"● other visual tokens ({int((~sinks).sum())})", OTHER)], "lower right")
    figure.text(0.01, 0.99, f"φ vs attention of visual tokens, layer {layer}\n{sink_note(trace, layer)}\n"
                f"{query_label(trace, query)}, before VAR", va="top", fontsize=10)
    return figure


def profile_roles(trace: Trace) -> list[str]:
    """What each token of the massive-activation profile is, in the terms `phi_tokens` uses: BOS, the strongest
    visual sink candidate and the typical visual token when they are the ones φ by layer draws, else what they are at
    the profile layer; each with a second line saying whether it is a sink there."""
    layer = trace.profile_layer
    drawn = {position: role for position, role, _ in phi_tokens(trace)}
    fallback = ("first token", f"highest-φ visual token at layer {layer}", f"median-φ visual token at layer {layer}")
    return [f"{drawn.get(int(position), other)}\n{'a sink' if trace.sink_mask[layer, int(position)] else 'no sink'} "
            f"at layer {layer}" for position, other in zip(trace.profile_tokens, fallback)]


def strongest_note(trace: Trace) -> str:
    """'strongest visual sink candidate: patch (1, 3), pos 11, φ = 23.3 at layer 4', for titles."""
    position = int(trace.visual_positions[visual_by_phi(trace)[-1]])
    peak = int(np.argmax(trace.phi[:, position]))
    return (f"strongest visual sink candidate: {token_name(trace, position)}, pos {position}, "
            f"φ = {trace.phi[peak, position]:.1f} at layer {peak}")


@styled
def massive_activations(trace: Trace) -> Figure:
    """|x|/RMS(x) per hidden dimension at the profile layer for BOS, a visual sink and a normal visual token, as
    three labelled bands of one axes on one scale; sink dimensions in vermillion, φ (their largest value) annotated,
    τ dashed; the title names the layer, whether it has visual sinks and where the strongest one (as φ by layer
    names it) peaks."""
    profile = trace.profile_hidden
    dims = [int(d) for d in trace.settings.get("sink_dims", []) if int(d) < profile.shape[1]]
    tau = trace.settings.get("tau", np.nan)
    band = float(max(profile.max(), tau if np.isfinite(tau) else 0.0)) * 1.45
    figure = new_figure(6.4, 5.0, left=0.6, top=0.8)
    axes = figure.add_subplot()
    for row, (values, position, role) in enumerate(zip(profile, trace.profile_tokens, profile_roles(trace))):
        base = (len(profile) - 1 - row) * band
        stems = np.stack([np.full_like(values, base), base + values, np.full_like(values, np.nan)], 1).ravel()
        axes.plot(np.repeat(np.arange(len(values)), 3), stems, color=OTHER, linewidth=0.8)  # one path, D stems
        axes.plot([0, len(values)], [base + tau] * 2, color="#141414", linestyle="--", linewidth=0.8)
        for dim in dims:
            axes.plot([dim, dim], [base, base + values[dim]], color=SELECTED, linewidth=2)
        if dims:
            peak = max(dims, key=lambda dim: values[dim])  # φ of this token is its value here
            left = peak > 0.6 * len(values)  # keep the note inside the axes
            axes.annotate(f"φ = {values[peak]:.1f} (d{peak})", (peak, base + values[peak]), fontsize=9,
                          xytext=(-4 if left else 4, -2), textcoords="offset points", color=SELECTED, va="top",
                          ha="right" if left else "left")
        token = trace.tokens[int(position)].strip() if int(position) < len(trace.tokens) else "?"
        axes.text(0.01, base + 0.97 * band, f"{role.replace(chr(10), ', ')}: pos {int(position)} {token!r}",
                  va="top", fontsize=9, transform=axes.get_yaxis_transform(),
                  bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none", "pad": 1})
    few_ticks(axes)
    axes.set_yticks([])
    axes.set_ylim(0, band * len(profile))
    axes.set_xlim(-1, profile.shape[1])
    axes.set_xlabel(f"hidden dimension (sink dims {dims} in vermillion)")
    axes.set_ylabel(f"|x| / RMS(x), each band 0 … {band:.0f}")
    figure.text(0.01, 0.99, f"Massive activations entering layer {trace.profile_layer} (dashed: τ = {tau:g})\n"
                f"{sink_note(trace, trace.profile_layer)}\n{strongest_note(trace)}", va="top", fontsize=10)
    return figure


@styled
def sink_attention_by_layer(trace: Trace, query: int | str = "all") -> Figure:
    """Per captured layer: mean attention a visual sink token receives vs a non-sink visual token (before VAR, mean
    over heads and `query` rows); layers without visual sinks leave a gap."""
    attention = visual_attention(trace, query)
    layers = np.array(trace.layers_captured)
    sinks = trace.visual_sinks[layers]
    count = sinks.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        to_sinks = np.where(count > 0, (attention * sinks).sum(1) / count, np.nan)
        to_others = (attention * ~sinks).sum(1) / np.maximum((~sinks).sum(1), 1)
    figure = new_figure(max(5.0, 0.15 * len(layers) + 2.0), 3.2, top=0.55)
    axes = figure.add_subplot()
    axes.plot(layers, to_sinks, "D-", color=SELECTED, markersize=4)
    axes.plot(layers, to_others, "o-", color=OTHER, markersize=3)
    log_y(axes)
    few_ticks(axes, x=8)
    axes.set_xlabel("layer")
    axes.set_ylabel("attention per token")
    key(axes, [("◆ per visual sink token", SELECTED), ("● per other visual token", OTHER)], "lower right")
    figure.text(0.01, 0.99, f"Attention to visual sinks vs other visual tokens{layers_note(trace)}\n"
                f"{query_label(trace, query)}, mean over heads, before VAR", va="top", fontsize=10)
    return figure


def visual_by_phi(trace: Trace) -> np.ndarray:
    """Grid indices of the visual tokens in ascending order of their largest φ over layers (stable): the last is the
    strongest visual sink candidate, the middle one a typical visual token."""
    return np.argsort(trace.phi_visual.max(0), kind="stable")


def phi_tokens(trace: Trace, tokens: Sequence[int] | None = None) -> list[tuple[int, str, str]]:
    """[(position, role, colour)]: BOS (position 0), the strongest visual sink candidate (largest φ over layers),
    a typical visual token (median of that), then the prompt positions `tokens`; each position once."""
    count = trace.phi.shape[1]
    tokens = [] if tokens is None else list(tokens)
    bad = [t for t in tokens if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or not 0 <= t < count]
    if bad:
        raise ValueError(f"tokens {bad} are not prompt positions: φ covers positions 0 … {count - 1}")
    order = visual_by_phi(trace)
    picks = [(0, PROFILE_ROLES[0], BOS_COLOUR), (int(trace.visual_positions[order[-1]]), PROFILE_ROLES[1], SELECTED),
             (int(trace.visual_positions[order[len(order) // 2]]), PROFILE_ROLES[2], OTHER)]
    picks += [(int(t), "chosen token", EXTRA_COLOURS[i % len(EXTRA_COLOURS)]) for i, t in enumerate(tokens)]
    unique: dict[int, tuple[int, str, str]] = {}
    for pick in picks:
        unique.setdefault(pick[0], pick)
    return list(unique.values())


def token_name(trace: Trace, position: int) -> str:
    """'patch (row, col)' for a visual token on the grid, else the token's text, quoted and cut to 12 characters."""
    visual = np.nonzero(trace.visual_positions == position)[0]
    if len(visual):
        return "patch ({}, {})".format(*cell_of(trace.cell_map, int(visual[0])))
    return repr(trace.tokens[position].replace("\n", "↵").strip()[:12] or trace.tokens[position])


@styled
def phi_by_layer(trace: Trace, tokens: Sequence[int] | None = None) -> Figure:
    """φ(x) entering every layer for BOS, the strongest and a typical visual token and the prompt positions `tokens`,
    τ dashed: the layer where a massive activation appears and how long it stays (paper Fig. 2, across depth)."""
    picks = phi_tokens(trace, tokens)
    tau = trace.settings.get("tau", np.nan)
    layers = np.arange(trace.phi.shape[0])
    figure = new_figure(7.6, 3.6, right=2.9, top=0.6)
    axes = figure.add_subplot()
    for position, role, colour in picks:
        axes.plot(layers, trace.phi[:, position], "o-", color=colour, markersize=3, linewidth=1.5,
                  label=f"{role}\npos {position} {token_name(trace, position)}")
    if np.isfinite(tau):
        axes.axhline(tau, color="#141414", linestyle="--", linewidth=1, label=f"τ = {tau:g} (sink threshold)")
    drawn = trace.phi[:, [position for position, _, _ in picks]]
    axes.set_ylim(0, max(float(drawn.max()), tau if np.isfinite(tau) else 0.0) * 1.08)
    few_ticks(axes, x=8)
    axes.set_xlabel("layer (φ of the hidden state entering it)")
    axes.set_ylabel("φ(x)")
    axes.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, fontsize=8, labelspacing=0.9)
    figure.text(0.01, 0.99, "φ by layer: the layer where a massive activation appears, and how long it stays\n"
                f"φ(x) = max over sink dims {trace.settings.get('sink_dims', [])} of |x[d]| / RMS(x)", va="top",
                fontsize=10)
    return figure
