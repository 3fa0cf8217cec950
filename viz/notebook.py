"""Notebook displays: a compact summary and the key picture of a Trace or an Analysis, as HTML (what
`Trace._repr_html_` and `Analysis._repr_html_` return). PIL images and matplotlib Figures from the other views
display in Jupyter as they are."""

from __future__ import annotations

import base64
import html
import io

import numpy as np
from PIL import Image

from var_core.trace import Trace
from viz.compare import before_after
from viz.explain import compare_methods
from viz.heatmap import attention_heatmap


def image_tag(image: Image.Image, width: int | None = None, alt: str = "") -> str:
    """An inline <img> of `image` as base64 PNG (`alt`: its text for screen readers, escaped)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    size = f' width="{width}"' if width else ""
    text = f' alt="{html.escape(alt)}"' if alt else ""
    return f'<img src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}"{size}{text}>'


def sink_layer(trace: Trace) -> int:
    """The captured layer with the most visual sinks (the middle captured layer when there are none): where the key
    picture is drawn."""
    layers = trace.layers_captured
    counts = trace.visual_sinks[layers].sum(1)
    return layers[int(counts.argmax()) if counts.any() else len(layers) // 2]


def answer_rows(trace: Trace) -> str:
    """"answer" when the answer has query rows of its own (two tokens or more), else "all"."""
    return "answer" if len(trace.query_positions) > trace.settings.get("prompt_queries", 0) else "all"


def facts(trace: Trace) -> str:
    """One line: run kind, grid, depth × width, where the visual sinks are, how many image-centric heads."""
    settings = trace.settings
    run = f"VAR (p = {settings['p']:g})" if trace.var_applied else "baseline"
    per_layer = trace.visual_sinks.sum(1)
    layers = np.nonzero(per_layer)[0]
    sinks = (f"visual sinks in layers {layers[0]}–{layers[-1]} (up to {int(per_layer.max())})" if len(layers)
             else "no visual sinks")
    captured = len(trace.layers_captured)
    layers = f"{trace.num_layers} layers" + ("" if captured == trace.num_layers else f" ({captured} captured)")
    return (f"{run} · grid {trace.grid[0]}×{trace.grid[1]} · {layers} × {trace.num_heads} heads · "
            f"τ = {settings.get('tau', float('nan')):g} · {sinks} · "
            f"{int(trace.selected.any(-1).sum())} image-centric (layer, head) pairs")


def trace_html(trace: Trace) -> str:
    """Model, prompt, answer, the facts line and the attention heatmap at the layer with the most visual sinks."""
    layer = sink_layer(trace)
    picture = attention_heatmap(trace, layer, None, answer_rows(trace), short_side=224)
    return (f"<div><b>Trace</b> of <code>{html.escape(trace.model_name)}</code><br>"
            f"<b>prompt</b> {html.escape(trace.prompt)}<br><b>answer</b> {html.escape(trace.answer)}<br>"
            f"<small>{html.escape(facts(trace))}</small><br>{image_tag(picture)}</div>")


def analysis_html(analysis) -> str:
    """Both answers side by side, the VAR run's facts, and attention before / after VAR at the layer with the most
    visual sinks. `analysis`: anything with `baseline` and `var` Traces (a `var_core.analysis.Analysis`)."""
    var = analysis.var
    layer = sink_layer(var)
    picture = before_after(var, layer, None, answer_rows(var), short_side=200)
    return (f"<div><b>Analysis</b> of <code>{html.escape(var.model_name)}</code>: {html.escape(var.prompt)}"
            f"<table><tr><th>baseline</th><th>with VAR</th></tr><tr><td>{html.escape(analysis.baseline.answer)}</td>"
            f"<td>{html.escape(var.answer)}</td></tr></table><small>{html.escape(facts(var))}</small><br>"
            f"{image_tag(picture)}</div>")


def explanation_html(explanation) -> str:
    """The four maps of one run (a `var_core.explain.Explanation`) with its visual sink patches framed."""
    run = "VAR" if explanation.var else "baseline"
    picture = compare_methods(explanation.image, {run: explanation.maps},
                              f"first answer token {explanation.answer_token.strip()!r}",
                              sinks={run: explanation.sink_patches})
    shares = ", ".join(f"{method} {share:.0%}" for method, share in explanation.mass_on_sinks().items())
    return f"<div><b>Explanation</b> ({run}) · share on visual sinks: {html.escape(shares)}<br>{image_tag(picture)}</div>"
