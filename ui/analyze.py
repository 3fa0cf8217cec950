"""Analyze: both runs, then every view of the stored Traces (re-rendered without the model), downloads and
reopening a saved analysis."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import gradio as gr
import numpy as np

from var_core.analysis import Analysis, analyze
from var_core.gpu import gpu_task
from var_core.inputs import flag, number
from var_core.models.catalog import DEFAULT_MODEL_ID
from var_core.models.common import describe_seen
from var_core.run import ATTENTION_NUMERICS
from var_core.saved import reopen
from var_core.sessions import Held
from var_core.trace import layer_span
from viz.changes import var_changes_figure, var_changes_markdown
from viz.compare import before_after
from viz.diff import answer_diff
from viz.evidence import (massive_activations, phi_attention_scatter, phi_by_layer, sink_attention_by_layer,
                          visual_by_phi)
from viz.figures import figure_image
from viz.grid import head_grid
from viz.heatmap import attention_heatmap, heatmap_cell
from viz.queries import view_of
from viz.ranking import head_ranking, selection_summary, top_heads_table
from viz.report import analysis_report
from viz.reverse import patch_layer_head, tokens_attending
from viz.sinks import phi_overlay, sink_count_strip
from viz.tokens import strip_rows, token_strip

from ui import state
from ui.settings import (DEFAULTS, MAX_NEW_TOKENS_UI, captured_text, checked_settings, layers_to_capture, model_image,
                         nearest_captured, var_config)
from ui.state import GPU_DURATION_S, LOG, Refused, RUN_TIME_LIMIT_S, keep, model_job, session_of, stored
from ui.texts import STALE, VAR_SETTINGS_HINT


MEAN_HEADS = -1
SELECTION_VIEWS = ("heatmap", "head_grid", "before_after", "tokens", "phi_vs_attention", "phi_overlay", "sink_strip")
QUERY_MODES = [("mean over answer tokens", "answer"), ("mean over prompt text", "prompt"),
               ("mean over all text", "all")]


@gpu_task(duration=GPU_DURATION_S)  # spaces.GPU on Hugging Face Spaces (ZeroGPU); a no-op elsewhere
def run_analysis(image, prompt, model_id, settings: dict, square: bool, max_new_tokens, capture, progress,
                 stop) -> tuple[dict, Analysis]:
    """The model part of a request: load (or reuse) the model, check the settings, answer without and with VAR,
    capturing attention in the `capture` layers (text; empty: the model's default)."""
    LOG.info("analysis started: model=%s prompt=%r", model_id, str(prompt)[:80])
    progress(0.02, desc=f"Loading model {model_id}")
    bundle = state.slot.get(model_id)
    config = var_config(bundle, **settings)
    layers = layers_to_capture(bundle, capture)
    image = model_image(bundle, image, square)
    steps = iter([(0.1, "Baseline answer (no VAR)"), (0.5, "Answer with VAR")])
    result = analyze(bundle, image, prompt, config, int(max_new_tokens), on_step=lambda _: progress(*next(steps)),
                     max_time=RUN_TIME_LIMIT_S, stop=stop, capture_layers=layers)
    LOG.info("analysis done: model=%s prompt=%r baseline=%r var=%r", state.slot.current_id, prompt[:80],
             result.baseline.answer[:80], result.var.answer[:80])
    progress(0.95, desc="Rendering views")
    return result.summary(), result


async def analyze_request(image, prompt, model_id=DEFAULT_MODEL_ID, p=DEFAULTS["p"], rho=DEFAULTS["rho"], tau=None,
                          min_visual_mass=DEFAULTS["min_visual_mass"], max_new_tokens=DEFAULTS["max_new_tokens"],
                          first_layer=None, last_layer=None, recycle_text_sinks=True, capture_layers=None,
                          pad_to_square=False, request: gr.Request = None, progress=gr.Progress()):
    """Answer `prompt` about `image` without and with VAR (greedy decoding).

    Returns a JSON summary: baseline_answer, var_answer, sinks (per layer: count and positions of visual sink
    tokens), heads (selected image-centric heads with r, in the captured layers), settings, warnings (why VAR did
    nothing, when it did: e.g. no visual sink at τ in its layers). Settings left empty
    take the model's defaults (τ from its registry entry, VAR layers 2 … L−2, capture_layers as `default_capture`:
    "all", "0-7" or "0,4,8"); pad_to_square: pad the image to a square first (nothing is cropped away).
    """
    try:
        settings = checked_settings(p, rho, tau, min_visual_mass, first_layer, last_layer, recycle_text_sinks)
        max_new_tokens = number(max_new_tokens, "max new tokens", 1, MAX_NEW_TOKENS_UI, integer=True)
        square = flag(pad_to_square, "pad_to_square")
    except ValueError as error:
        raise Refused(str(error)) from None
    session = session_of(request)
    summary, result = await model_job(session, "analysis", run_analysis, image, prompt, model_id or DEFAULT_MODEL_ID,
                                      settings, square, max_new_tokens, capture_layers, progress)
    return summary, keep(session, "analysis", result)


def _status(result: Analysis, changes=None) -> str:
    """One line naming the model, its dtype and attention numerics, τ, sink dims, the VAR convention actually used,
    the captured layers and the layers with visual sinks; then, in bold, why VAR did nothing when it did nothing
    (`Analysis.warnings`: no visual sink at τ in its layers, and which τ would change that). `changes`:
    `result.changes()` when already computed."""
    trace = result.var
    s = trace.settings
    layers = s["var_layers"]
    line = (f"**{s['model']}** · {s.get('dtype', 'float32')} · attention {s.get('attention', ATTENTION_NUMERICS)} · "
            f"sink dims {s['sink_dims']} · τ = {s['tau']:g} · ρ = {s['rho']:g} · "
            f"p = {s['p']:g} moved (paper convention) · VAR {layer_span(layers) if layers else 'in no layer'} · "
            f"{'text sinks recycled too (official)' if s['recycle_text_sinks'] else 'visual sinks only'} · "
            f"attention captured in layers {captured_text(trace.layers_captured, trace.num_layers)} · "
            f"{selection_summary(trace)}")
    sinks = trace.sink_mask[np.ix_(np.asarray(layers, dtype=np.int64), trace.all_image_positions)]
    sink_layers = [layer for layer, row in zip(layers, sinks) if row.any()]
    if sink_layers:
        line += (f" · visual sinks in layers {sink_layers[0]}–{sink_layers[-1]} "
                 f"(up to {int(sinks.sum(-1).max())} per layer)")
    for warning in result.warnings(changes):
        line += f"  \n**{warning}** {VAR_SETTINGS_HINT}"
    return line


def seen_sentence(trace) -> str:
    """What the model saw, under the image: the run's `describe_seen` sentence (led by a warning when the processor
    cut part of the image away), or for a Trace saved before runs recorded it, the size and visual tokens the Trace
    itself holds."""
    seen = trace.settings.get("seen") or {}
    if seen.get("cropped"):
        return (f"**Part of the image was cut away before the model saw it** (the model input is below). "
                f"{describe_seen(seen)}")
    if seen:
        return f"{describe_seen(seen)} The model's input:"
    height, width = trace.image.shape[:2]
    tokens, (rows, cols) = len(trace.all_image_positions), trace.grid
    return (f"The model saw the image at {width}×{height} px as {tokens} visual tokens"
            f"{'' if tokens == rows * cols else f', {rows}×{cols} of them drawn as the grid'}.")


def layer_update(trace, layer) -> dict:
    """The layer picker fitted to a Trace: only its captured layers, `layer` or the captured one nearest to it."""
    layers = trace.layers_captured
    value = nearest_captured(layers, layer)
    return gr.update(choices=[(str(captured), captured) for captured in layers], value=value,
                     label=f"Layer (captured: {captured_text(layers, trace.num_layers)})")


def _head(head) -> int | None:
    return None if head is None or int(head) == MEAN_HEADS else int(head)


def _trace(result: Analysis, source: str):
    return result.baseline if source == "baseline" else result.var


def selection_views(result: Analysis, layer, head, query, source, log_scale, patch=None, view=None):
    """Views that follow the one layer / head / query / picture selection, each marking it: heatmap (the reverse
    view's `patch` framed), grid (the layer's row, the head's tile), before/after, token strip (the query token),
    the φ-vs-attention scatter (the baseline's, as in the paper), the φ overlay and the sink count strip. `view`:
    the part of a tiled model's picture drawn (None: the whole, every visual token)."""
    trace, layer, head = _trace(result, source), int(layer), _head(head)
    view = view if view in view_names(trace) else None
    return (attention_heatmap(trace, layer, head, query, log=log_scale, patch=patch, view=view),
            head_grid(trace, query, log=log_scale, layer=layer, head=head, view=view),
            before_after(result.var, layer, head, query, log=log_scale, view=view),
            token_strip(trace, layer, head, relative=True, query=query),
            phi_attention_scatter(result.baseline, layer), phi_overlay(result.var, layer, view=view),
            sink_count_strip(result.var, layer))


def view_names(trace) -> list[str]:
    """The parts of the picture a user can pick: the whole first, then each view the processor cut."""
    return [view["name"] for view in trace.view_list]


def view_update(trace, view) -> dict:
    """The picture picker fitted to a Trace: its views, `view` kept when it has it; hidden for one-view models."""
    names = view_names(trace)
    return gr.update(choices=names, value=view if view in names else names[0], visible=len(names) > 1)


def reverse_views(result: Analysis, patch, layer, head, source):
    """The reverse view of one patch: text tokens coloured by how much they attend to it, and its layer × head tile."""
    trace = _trace(result, source)
    return (tokens_attending(trace, int(patch), int(layer), _head(head)),
            patch_layer_head(trace, int(patch), layer=int(layer), head=_head(head)))


def render_all(held: Held | None, layer, head, query, source, log_scale, patch=None, view=None):
    """Every view of a fresh analysis, what the model saw, and the selectors fitted to this model and these tokens;
    the reverse view opens on the strongest visual sink (whatever `patch` the page held before)."""
    result = stored(held)
    if result is None:
        raise Refused("Run an analysis first.")
    trace = result.var
    layer_choice = layer_update(trace, layer if layer is not None else 0)
    layer = layer_choice["value"]
    head = head if head is not None and int(head) < trace.num_heads else MEAN_HEADS
    query = query if query in dict(QUERY_MODES).values() else "answer"
    baseline_diff, var_diff = answer_diff(result.baseline.answer, result.var.answer)
    heads = [("mean over heads", MEAN_HEADS)] + [(f"head {h}", h) for h in range(trace.num_heads)]
    queries = QUERY_MODES + [(f"{row}: {trace.tokens[pos].strip() or repr(trace.tokens[pos])}", row)
                             for row, pos in enumerate(trace.query_positions)]
    patch = int(visual_by_phi(trace)[-1])
    try:
        selected = selection_views(result, layer, head, query, source, bool(log_scale), patch, view)
    except ValueError:  # e.g. a one-token answer has no "answer" rows beyond the prompt's last token
        query = "all"
        selected = selection_views(result, layer, head, query, source, bool(log_scale), patch, view)
    changes = result.changes()
    return (baseline_diff, var_diff, var_changes_markdown(changes), var_changes_figure(changes),
            _status(result, changes), seen_sentence(trace), gr.update(value=trace.image, visible=True), layer_choice,
            gr.update(choices=heads, value=head), gr.update(choices=queries, value=query), phi_by_layer(trace),
            head_ranking(trace), gr.update(value=top_heads_table(trace), label=selection_summary(trace)),
            massive_activations(result.baseline), sink_attention_by_layer(result.baseline), *selected,
            gr.update(value=patch, maximum=len(trace.visual_positions) - 1),
            *reverse_views(result, patch, layer, head, source), view_update(trace, view))


def render_selection(held: Held | None, layer, head, query, source, log_scale, patch=None, view=None):
    """Re-render the selection-dependent views from the stored Traces (no model run)."""
    result = stored(held)
    if result is None or layer is None:
        return [gr.skip()] * len(SELECTION_VIEWS)
    try:
        patch = number(patch, "patch", 0, integer=True, optional=True)
        return selection_views(result, layer, head, query, source, bool(log_scale), patch, view)
    except ValueError as error:
        raise Refused(str(error)) from None


def render_reverse(held: Held | None, patch, layer, head, source):
    """Re-render the reverse view for another patch, layer, head or run (no model run)."""
    result = stored(held)
    if result is None or patch is None or layer is None:
        return [gr.skip()] * 2
    try:
        return reverse_views(result, number(patch, "patch", 0, integer=True), layer, head, source)
    except ValueError as error:
        raise Refused(str(error)) from None


def pick_patch(held: Held | None, layer, head, source, view, evt: gr.SelectData):
    """Clicking the heatmap selects the patch under the pointer and fills the reverse view (the title, the colour
    bar and the gaps between a tiled model's views select nothing)."""
    result = stored(held)
    trace = None if result is None else _trace(result, source)
    if trace is not None:
        image, cells = view_of(trace, view if view in view_names(trace) else None)
    patch = None if trace is None else heatmap_cell(image.shape, cells, evt.index)
    if patch is None:
        return [gr.skip()] * 3
    return (patch, *reverse_views(result, patch, layer, head, source))


def stale_status(status_line):
    """After a failed Analyze: the status line says the views are of the previous analysis (once)."""
    if not status_line:
        return gr.skip()
    return f"{STALE}  \n{str(status_line).removeprefix(STALE).lstrip()}"


def pick_token(held: Held | None, evt: gr.SelectData):
    """Clicking a token in the strip selects that query row (tokens that are not queries do nothing)."""
    result = stored(held)
    if result is None:
        return gr.skip()
    rows = strip_rows(result.var)
    row = rows[evt.index] if isinstance(evt.index, int) and evt.index < len(rows) else None
    return gr.skip() if row is None else gr.update(value=row)


def make_downloads(held: Held | None, layer, head, query, source, log_scale, patch=None, view=None):
    """Every figure as PNG, both Traces as .npz, and a JSON of settings + answers, in a fresh temp folder."""
    result = stored(held)
    if result is None:
        raise Refused("Run an analysis first.")
    folder = Path(tempfile.mkdtemp(prefix="visual-sink-lens-"))
    try:
        patch = number(patch, "patch", 0, integer=True, optional=True)
        views = dict(zip(SELECTION_VIEWS, selection_views(result, layer, head, query, source, bool(log_scale), patch,
                                                          view)))
    except ValueError as error:
        raise Refused(str(error)) from None
    del views["tokens"]  # highlighted text, not a figure
    figures = {**views, "head_ranking": head_ranking(result.var), "phi_by_layer": phi_by_layer(result.var),
               "massive_activations": massive_activations(result.baseline),
               "sink_attention_by_layer": sink_attention_by_layer(result.baseline)}
    paths = []
    for name, view in figures.items():
        image = view if hasattr(view, "save") else figure_image(view)
        paths.append(folder / f"{name}.png")
        image.save(paths[-1])
    paths += [result.baseline.save(folder / "trace_baseline.npz"), result.var.save(folder / "trace_var.npz")]
    selection = {"layer": int(layer), "head": _head(head), "query": query,
                 "run": "baseline" if source == "baseline" else "var", "log_scale": bool(log_scale)}
    paths.append(folder / "analysis.json")
    paths[-1].write_text(json.dumps({"prompt": result.var.prompt, **result.summary(), "selection": selection}, indent=1))
    paths.append(folder / "report.html")  # one self-contained file: every figure, the settings, what the model saw
    paths[-1].write_text(analysis_report(result, figures, selection, seen=seen_sentence(result.var)), encoding="utf-8")
    return [str(path) for path in paths]


def reopen_request(files, request: gr.Request = None):
    """Reopen a saved analysis (its two .npz Traces and, optionally, analysis.json) as this session's analysis,
    with the saved layer / head / query / run selected: every view comes back without the model."""
    paths = [getattr(file, "name", file) for file in (files or [])]
    try:
        analysis, saved = reopen(paths)
    except ValueError as error:
        raise Refused(str(error)) from None
    saved = saved or {"layer": 5, "head": None, "query": "answer", "run": "var", "log_scale": False}
    held = keep(session_of(request), "analysis", analysis)
    head = MEAN_HEADS if saved["head"] is None else saved["head"]
    return (analysis.summary(), held, saved["layer"], head, saved["query"],
            "baseline" if saved["run"] == "baseline" else "VAR", saved["log_scale"])
