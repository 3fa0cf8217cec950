"""Reopen a saved analysis: the two `.npz` Traces (and optionally the `analysis.json`) the app exports, uploaded
back, checked and turned into an `Analysis` and its saved selection, so every view returns without the model."""

from __future__ import annotations

import json
import os
import zipfile
import zlib
from dataclasses import fields
from pathlib import Path
from typing import NamedTuple

import numpy as np

from var_core.analysis import Analysis
from var_core.inputs import listed, number, shown
from var_core.layout import check_every_token_once
from var_core.sessions import MB
from var_core.trace import ARRAY_FIELDS, Trace

MAX_FILE_MB = 20  # one uploaded file, as the app's upload limit
MAX_UNPACK_RATIO = 20  # an .npz's arrays may unpack to this many times the file limit (saved Traces: ≈ 1.3×)
QUERY_MODES = ("all", "answer", "prompt")  # as viz.queries names them
RUNS = ("baseline", "var")
OURS = {"baseline_answer", "var_answer", "settings"}  # the keys that mark an analysis.json the app exported
AGAIN = "upload trace_baseline.npz and trace_var.npz of one analysis"


class Reopened(NamedTuple):
    """A reopened analysis and the selection saved with it (None without an analysis.json, or one without it)."""

    analysis: Analysis
    selection: dict | None


def reopen(paths, max_mb: float = MAX_FILE_MB) -> Reopened:
    """The Analysis in `paths` (file paths: two saved Traces, one without and one with VAR, and at most one
    analysis.json, in any order, told apart by content); a ValueError of at most 300 characters when a file is
    missing, unreadable, too large, not ours, or of another analysis."""
    traces, documents = [], []
    for path in [paths] if isinstance(paths, (str, os.PathLike)) else paths or []:
        path = Path(path)
        kind, value = _read(path, max_mb)
        (traces if kind == "trace" else documents).append((shown(path.name), value))
    analysis = _pair(traces)
    if len(documents) > 1:
        raise ValueError(f"Two analysis JSON files ({documents[0][0]}, {documents[1][0]}): upload one")
    return Reopened(analysis, _document(*documents[0], analysis) if documents else None)


def _read(path: Path, max_mb: float) -> tuple[str, object]:
    """("trace", Trace) or ("json", dict) for one uploaded file, after checking its size."""
    name = shown(path.name)
    if not path.is_file():
        raise ValueError(f"{name} cannot be read: there is no such file")
    size = os.path.getsize(path)
    if size > max_mb * MB:
        raise ValueError(f"{name} is {size / MB:,.1f} MB; the limit is {max_mb:g} MB per file")
    if zipfile.is_zipfile(path):
        return "trace", _trace(path, name, max_mb * MAX_UNPACK_RATIO * MB)
    try:
        return "json", json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ValueError(f"{name} is neither a saved Trace (.npz) nor an analysis.json") from None


def _trace(path: Path, name: str, max_unpacked: float) -> Trace:
    """The Trace saved in the .npz at `path`: bounded unpacked, never unpickled, of types and shapes that fit."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (OSError, zipfile.BadZipFile) as error:
        raise _corrupt(name, error) from None
    unpacked = sum(member.file_size for member in members)
    if unpacked > max_unpacked:
        raise ValueError(f"{name} unpacks to {unpacked / MB:,.0f} MB; the limit is {max_unpacked / MB:g} MB")
    if "meta.npy" not in {member.filename for member in members}:
        raise ValueError(f"{name} is an archive but not a saved Trace (it holds no Trace metadata)")
    try:
        trace = Trace.load(path)
    except (ValueError, OSError, KeyError, TypeError, EOFError, RecursionError, zipfile.BadZipFile,
            zlib.error) as error:
        raise _corrupt(name, error) from None
    wrong = _wrong_types(trace) or _misfits(trace)
    if wrong:
        raise ValueError(f"{name} is not a consistent saved Trace: its {listed(wrong, 4)} do not fit together")
    return trace


def _corrupt(name: str, error: Exception) -> ValueError:
    """The message for an .npz that numpy or Trace cannot read."""
    return ValueError(f"{name} is corrupt or not a Trace saved by this app ({type(error).__name__}: "
                      f"{shown(str(error))})")


def _wrong_types(trace: Trace) -> list[str]:
    """The Trace fields of a type the views cannot use (arrays of numbers, texts, whole numbers, lists of them)."""
    wrong = [item.name for item in fields(Trace) if item.name in ARRAY_FIELDS and not _array_or_none(
        getattr(trace, item.name), item.default is None)]
    kinds = {"model_name": str, "prompt": str, "answer": str, "settings": dict, "n_prompt": int, "profile_layer": int}
    wrong += [name for name, kind in kinds.items() if not isinstance(getattr(trace, name), kind)]
    wrong += [name for name, right in (("tokens", _list_of(trace.tokens, str)),
                                       ("grid", _list_of(trace.grid, int) and len(trace.grid) == 2),
                                       ("captured_layers", trace.captured_layers is None
                                        or _list_of(trace.captured_layers, int))) if not right]
    return wrong


def _array_or_none(value, optional: bool) -> bool:
    """Whether `value` is an array of numbers (or None, for an optional field)."""
    if value is None:
        return optional
    return isinstance(value, np.ndarray) and (np.issubdtype(value.dtype, np.number) or value.dtype == bool)


def _list_of(values, kind: type) -> bool:
    """Whether `values` is a list or tuple of `kind`."""
    return isinstance(values, (list, tuple)) and all(isinstance(value, kind) for value in values)


def _cells_fit(trace: Trace) -> bool:
    """Whether the layout draws each visual token exactly once on the grid (a one-view grid: rows·cols tokens)."""
    if trace.cells is None:
        return trace.grid[0] * trace.grid[1] == len(trace.visual_positions)
    try:
        check_every_token_once(trace.cells, len(trace.visual_positions))
        view_boxes_fit = all(_list_of(view.get("box"), int) and len(view["box"]) == 4
                             and isinstance(view.get("name"), str) for view in trace.views or [])
    except (ValueError, TypeError, AttributeError):
        return False
    return tuple(trace.cells.shape) == tuple(trace.grid) and view_boxes_fit


def _misfits(trace: Trace) -> list[str]:
    """The parts of a well-typed Trace whose shapes or positions do not fit together."""
    ndims = {"image": 3, "phi": 2, "sink_mask": 2, "attn_to_visual": 4, "profile_hidden": 2}
    flat = [name for name, ndim in ndims.items() if getattr(trace, name).ndim != ndim]
    if flat:
        return flat
    layers, heads = trace.phi.shape[0], trace.attn_to_visual.shape[1]
    n_q = len(trace.query_positions)
    per_row = (len(trace.layers_captured), heads, n_q)
    checks = {
        "image": trace.image.shape[2] == 3 and trace.image.dtype == np.uint8 and min(trace.image.shape[:2]) > 0,
        "grid": len(trace.visual_positions) > 0 and _cells_fit(trace),
        "φ": trace.phi.shape == trace.sink_mask.shape == (layers, trace.n_prompt),
        "positions": trace.n_prompt <= len(trace.tokens) and _within(trace.visual_positions, trace.n_prompt)
        and _within(trace.all_image_positions, trace.n_prompt) and _within(trace.query_positions, len(trace.tokens)),
        "captured layers": len(trace.layers_captured) > 0
        and _within(np.array(trace.layers_captured, dtype=int), layers),
        "attention": trace.attn_to_visual.shape == (*per_row, len(trace.visual_positions)) and (
            trace.attn_to_visual_raw is None or trace.attn_to_visual_raw.shape == trace.attn_to_visual.shape),
        "head statistics": all(getattr(trace, name).shape == per_row
                               for name in ("visual_mass", "sink_mass", "ratio", "selected")),
        "profile": len(trace.profile_hidden) == len(trace.profile_tokens)
        and _within(trace.profile_tokens, trace.n_prompt)}
    return [what for what, right in checks.items() if not right]


def _within(positions: np.ndarray, end: int) -> bool:
    """Whether `positions` is a 1-D array of whole numbers in [0, end)."""
    return positions.ndim == 1 and np.issubdtype(positions.dtype, np.integer) and bool(
        ((positions >= 0) & (positions < end)).all())


def _pair(traces: list[tuple[str, Trace]]) -> Analysis:
    """The Analysis of exactly one baseline and one VAR Trace of the same model, image and prompt."""
    runs = {run: [(name, trace) for name, trace in traces if trace.var_applied == (run == "var")] for run in RUNS}
    for run, found in runs.items():
        label = "baseline Trace (without VAR)" if run == "baseline" else "VAR Trace"
        if not found:
            raise ValueError(f"A {label} is missing: {AGAIN}")
        if len(found) > 1:
            raise ValueError(f"Two files hold a {label} ({found[0][0]}, {found[1][0]}): {AGAIN}")
    (base_name, baseline), (var_name, var) = runs["baseline"][0], runs["var"][0]
    for what, left, right in (("models", baseline.model_name, var.model_name),
                              ("prompts", baseline.prompt, var.prompt)):
        if left != right:
            raise ValueError(f"{base_name} and {var_name} are of different {what} ({shown(left)} and "
                             f"{shown(right)}): {AGAIN}")
    if baseline.image.shape != var.image.shape or not np.array_equal(baseline.image, var.image):
        raise ValueError(f"{base_name} and {var_name} are of different images: {AGAIN}")
    return Analysis(baseline=baseline, var=var)


def _document(name: str, document, analysis: Analysis) -> dict | None:
    """The checked selection of an analysis.json of `analysis` (None when it has none); a ValueError when the JSON
    is not ours or belongs to another analysis."""
    if not isinstance(document, dict) or not OURS <= document.keys():
        raise ValueError(f"{name} is not an analysis.json exported by this app")
    ours = {"prompt": analysis.var.prompt, "baseline_answer": analysis.baseline.answer,
            "var_answer": analysis.var.answer}
    for key, value in ours.items():
        if key in document and document[key] != value:
            raise ValueError(f"{name} belongs to another analysis: its {key.replace('_', ' ')} is "
                             f"{shown(document[key])}, the Traces' is {shown(value)}")
    return None if document.get("selection") is None else checked_selection(document["selection"], analysis, name)


def checked_selection(selection, analysis: Analysis, name: str = "the selection") -> dict:
    """`selection` ({layer, head, query, run, log_scale}, as the app saves it) checked against `analysis`: a
    captured layer, a head (None: the mean over heads), a query mode or row, "baseline" / "var", a bool."""
    if not isinstance(selection, dict):
        raise ValueError(f"{name}: the selection must be an object, got {shown(selection)}")
    run = selection.get("run", "var")
    if run not in RUNS:
        raise ValueError(f"{name}: the selected run must be 'baseline' or 'var', got {shown(run)}")
    trace = analysis.var if run == "var" else analysis.baseline
    layer = number(selection.get("layer"), f"{name}: the selected layer", 0, trace.num_layers - 1, integer=True)
    trace.layer_slot(layer)
    head = selection.get("head")
    if head is not None:
        head = number(head, f"{name}: the selected head", 0, trace.num_heads - 1, integer=True)
    query = selection.get("query", "answer")
    if query not in QUERY_MODES:
        query = number(query, f"{name}: the selected query (a row, or answer / prompt / all)", 0,
                       len(trace.query_positions) - 1, integer=True)
    log_scale = selection.get("log_scale", False)
    if not isinstance(log_scale, bool):
        raise ValueError(f"{name}: log_scale must be true or false, got {shown(log_scale)}")
    return {"layer": layer, "head": head, "query": query, "run": run, "log_scale": log_scale}
