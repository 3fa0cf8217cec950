"""A full analysis: the same image and prompt answered without and with VAR, as two Traces."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable

import numpy as np

from var_core.config import VARConfig
from var_core.images import prepare_image
from var_core.models.bundle import ModelBundle
from var_core.run import generate
from var_core.trace import Trace, answer_rows, attention_source, layer_span, take_rows


@dataclass
class VarChanges:
    """What VAR changed in one analysis. sink_mass_before / after: [k] attention mass the answer rows give the visual
    sinks on the grid at each of the VAR run's captured `layers`, before and after VAR, mean over heads and rows (NaN
    when no answer row was captured); rows_touched: (layer, head, query) rows whose attention to the image changed, of
    rows_total; pairs_touched: the (layer, head) pairs with such a row, of pairs_total; baseline_top / var_top: the 5
    likeliest first answer tokens with their probabilities (None: not recorded)."""

    answers_identical: bool
    layers: list[int]
    sink_mass_before: np.ndarray
    sink_mass_after: np.ndarray
    rows_touched: int
    rows_total: int
    pairs_touched: list[tuple[int, int]]
    pairs_total: int
    baseline_top: list[tuple[str, float]] | None
    var_top: list[tuple[str, float]] | None

    def totals(self) -> tuple[float, float]:
        """(before, after) sink mass, mean over the captured layers (NaN when none or no answer row was captured)."""
        if not len(self.layers):
            return float("nan"), float("nan")
        return float(np.mean(self.sink_mass_before)), float(np.mean(self.sink_mass_after))

    def summary(self) -> dict:
        """JSON-friendly: every field, per-layer masses keyed by layer, NaN as None."""
        def number(value) -> float | None:
            return None if np.isnan(value) else float(value)

        return {"answers_identical": self.answers_identical,
                "sink_mass_by_layer": [{"layer": layer, "before": number(before), "after": number(after)}
                                       for layer, before, after in zip(self.layers, self.sink_mass_before,
                                                                       self.sink_mass_after)],
                "sink_mass_before": number(self.totals()[0]), "sink_mass_after": number(self.totals()[1]),
                "rows_touched": self.rows_touched, "rows_total": self.rows_total,
                "pairs_touched": [list(pair) for pair in self.pairs_touched], "pairs_total": self.pairs_total,
                "baseline_top": self.baseline_top, "var_top": self.var_top}


def _sink_mass(trace: Trace, attention: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """[k] mass the query `rows` give the visual sinks at each captured layer of `attention` [k, H, Q, N_vis], mean
    over heads and rows, in float32 (one layer at a time: no float32 copy of the whole array); NaN without rows."""
    if not len(rows):
        return np.full(len(trace.layers_captured), np.nan, np.float32)
    sinks = trace.visual_sinks[trace.layers_captured].astype(np.float32)  # [k, N_vis]
    return np.array([(take_rows(attention[slot:slot + 1], rows)[0] @ sinks[slot]).mean(dtype=np.float32)
                     for slot in range(len(sinks))], np.float32)


def var_changes(baseline: Trace, var: Trace) -> VarChanges:
    """What VAR changed between the `baseline` and `var` runs of one request (see `VarChanges`)."""
    raw = attention_source(var, raw=True)
    changed = np.zeros(var.attn_to_visual.shape[:3], bool)  # [k, H, Q], one layer at a time
    for slot, (used, before) in enumerate(zip(var.attn_to_visual, raw)):
        changed[slot] = (used != before).any(-1)
    rows, layers = answer_rows(var), var.layers_captured
    return VarChanges(answers_identical=baseline.answer == var.answer, layers=layers,
                      sink_mass_before=_sink_mass(var, raw, rows),
                      sink_mass_after=_sink_mass(var, var.attn_to_visual, rows),
                      rows_touched=int(changed.sum()), rows_total=int(changed.size),
                      pairs_touched=[(layers[slot], int(head)) for slot, head in zip(*np.nonzero(changed.any(-1)))],
                      pairs_total=int(changed.shape[0] * changed.shape[1]),
                      baseline_top=baseline.first_top(), var_top=var.first_top())


def var_warnings(var: Trace, changes: VarChanges) -> list[str]:
    """Why VAR did nothing, computed from the run: the VAR Trace's `warnings`, else, when every VAR layer was
    captured, that no attention row changed there although they hold visual sinks."""
    layers, s = var.settings.get("var_layers") or [], var.settings
    if var.warnings or not var.var_applied or changes.rows_touched or not changes.rows_total \
            or not set(layers) <= set(var.layers_captured):
        return var.warnings
    why = (f"no head was image-centric (r ≥ ρ = {s['rho']:g} and visual mass ≥ {s['min_visual_mass']:g}); "
           "lower ρ or the minimum visual mass" if s.get("select_heads", True) else "no row had attention to move")
    return [f"VAR did nothing: there are visual sinks at τ = {s['tau']:g} in its {layer_span(layers)} but it changed "
            f"no attention row: {why}"]


@dataclass
class Analysis:
    """Baseline and VAR runs of one request. Visual-token sinks are identical in both (VAR only changes
    the rows after the image), so `sinks` is reported once."""

    baseline: Trace
    var: Trace

    def _repr_html_(self) -> str:
        """Jupyter: both answers, the VAR run's facts, attention before / after VAR (drawn by `viz.notebook`)."""
        from viz.notebook import analysis_html

        return analysis_html(self)

    def changes(self) -> VarChanges:
        """What VAR changed: sink mass before → after, rows and heads touched, first-token top-5 (`var_changes`)."""
        return var_changes(self.baseline, self.var)

    def warnings(self, changes: VarChanges | None = None) -> list[str]:
        """Why VAR did nothing here, if it did (`var_warnings`); `changes`: `self.changes()` when already computed."""
        return var_warnings(self.var, changes or self.changes())

    def summary(self) -> dict:
        """The API's answer: both answers, what VAR changed, per-layer visual sinks, selected heads with r, settings,
        and warnings (e.g. "VAR did nothing: no visual sink at τ = … in its layers …")."""
        var_summary, changes = self.var.summary(), self.changes()
        return {
            "baseline_answer": self.baseline.answer,
            "var_answer": self.var.answer,
            "answers_differ": self.baseline.answer != self.var.answer,
            "var_changes": changes.summary(),
            "sinks": var_summary["sinks"],
            "heads": var_summary["heads"],
            "settings": var_summary["settings"],
            "warnings": self.warnings(changes),
        }


def analyze(bundle: ModelBundle, image, prompt: str, config: VARConfig, max_new_tokens: int = 32,
            on_step: Callable[[str], None] | None = None, max_time: float | None = None,
            stop: threading.Event | None = None, capture_layers=None) -> Analysis:
    """Run the baseline then VAR (greedy, same settings otherwise); `on_step` hears each step's name;
    `max_time` bounds each run's decoding in seconds; setting `stop` ends either run (`GenerationStopped`);
    `capture_layers`: the layers both Traces keep attention for (None = all; see `var_core.run.generate`)."""
    image = prepare_image(image)
    notify = on_step or (lambda step: None)
    notify("baseline")
    baseline = generate(bundle, image, prompt, config=None, max_new_tokens=max_new_tokens, measure=config,
                        max_time=max_time, stop=stop, capture_layers=capture_layers)
    notify("VAR")
    with_var = generate(bundle, image, prompt, config=config, max_new_tokens=max_new_tokens, max_time=max_time,
                        stop=stop, capture_layers=capture_layers)
    return Analysis(baseline=baseline, var=with_var)
