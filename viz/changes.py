"""What VAR changed: attention on visual sinks before → after per layer, rows and heads touched, first-token top-5."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure

from viz.figures import NEUTRAL, OTHER, few_ticks, new_figure, styled
from viz.queries import layer_spans

if TYPE_CHECKING:
    from var_core.analysis import VarChanges


@styled
def var_changes_figure(changes: VarChanges) -> Figure:
    """Per captured layer: attention mass the answer tokens give the visual sinks before VAR (grey) and after (blue),
    mean over heads; 390 px wide at 100 dpi, so a phone shows it at full size."""
    layers = np.array(changes.layers)
    figure = new_figure(3.9, 3.0, left=0.65, right=0.15, top=0.8, bottom=0.5)
    axes = figure.add_subplot()
    axes.plot(layers, changes.sink_mass_before, "o-", color=NEUTRAL, markersize=6, markerfacecolor="none",
              linewidth=1.2)  # hollow and larger: still visible where VAR changed nothing
    axes.plot(layers, changes.sink_mass_after, "D-", color=OTHER, markersize=3.5, linewidth=1.5)
    high = np.nanmax(np.concatenate([changes.sink_mass_before, changes.sink_mass_after, [0.0]]))
    axes.set_ylim(0, max(float(high) * 1.08, 1e-3))
    few_ticks(axes, x=6, y=4)
    axes.set_xlabel("layer")
    axes.set_ylabel("share of attention")
    if np.isnan(changes.sink_mass_before).all():
        axes.text(0.5, 0.5, "no answer token captured", transform=axes.transAxes, ha="center", va="center")
    figure.text(0.01, 0.985, f"Attention on visual sinks\nanswer tokens, mean over heads, layers "
                f"{layer_spans(changes.layers)}", va="top", fontsize=10)
    figure.text(0.01, 0.985 - 0.4 / 3.0, "○ before VAR", color=NEUTRAL, va="top", fontsize=10)
    figure.text(0.35, 0.985 - 0.4 / 3.0, "◆ after VAR", color=OTHER, va="top", fontsize=10)
    return figure


def _token(text: str) -> str:
    """A token for a Markdown table cell: quoted so spaces show, newlines as ↵, pipes and backticks escaped."""
    return "`" + repr(text.replace("\n", "↵")).replace("`", "ˋ").replace("|", "\\|") + "`"


def _probability(p: float) -> str:
    """'0.912', or '3.1e-05' below 0.001 (three decimals would print 0.000)."""
    return f"{p:.3f}" if p >= 1e-3 else f"{p:.1e}"


def _top_table(changes: VarChanges) -> list[str]:
    """Markdown rows: rank, then token and probability without and with VAR."""
    rows = ["| | without VAR | with VAR |", "|---|---|---|"]
    for rank, (before, after) in enumerate(zip(changes.baseline_top, changes.var_top), 1):
        rows.append(f"| {rank} | {_token(before[0])} {_probability(before[1])} | "
                    f"{_token(after[0])} {_probability(after[1])} |")
    return rows


def var_changes_markdown(changes: VarChanges) -> str:
    """A few Markdown lines: whether the answer changed, sink mass before → after, rows and (layer, head) pairs
    touched, and the first answer token's top-5 with and without VAR."""
    lines = ["**VAR did not change the answer.**" if changes.answers_identical else "**VAR changed the answer.**"]
    before, after = changes.totals()
    if np.isnan(before):
        lines.append("Attention on visual sinks: no answer token was captured.")
    else:
        relative = f" ({(after - before) / before:+.0%})" if before > 0 else ""
        lines.append(f"Attention on visual sinks (answer tokens, mean over heads and layers "
                     f"{layer_spans(changes.layers)}): **{before:.3f} → {after:.3f}**{relative}.")
    lines.append(f"Touched: **{changes.rows_touched:,}** of {changes.rows_total:,} (layer, head, query) rows, "
                 f"**{len(changes.pairs_touched)}** of {changes.pairs_total} (layer, head) pairs.")
    if changes.baseline_top is None or changes.var_top is None:
        lines.append("First-token probabilities were not recorded in these Traces.")
    else:
        (first, p_before), (chosen, p_after) = changes.baseline_top[0], changes.var_top[0]
        lines.append(f"First answer token: {_token(first)} p = {_probability(p_before)} without VAR, "
                     f"{_token(chosen)} p = {_probability(p_after)} with VAR.")
        lines.append("\n".join(_top_table(changes)))
    return "\n\n".join(lines)
