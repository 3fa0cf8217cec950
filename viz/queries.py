"""Which query rows and heads a view shows, and the text→visual maps reduced over them.

`query` is one of: an int (a row of `query_positions`), "all" (mean over every captured row), "answer" (rows that
predict answer tokens: position ≥ n_prompt − 1, i.e. the last prompt token and each fed-back generated token) or
"prompt" (the prompt text after the image, excluding that last token). `head` is an int or None (mean over heads).
`layer` is a model layer; the attention arrays hold only the Trace's captured layers, so every view goes through
`captured_slot` (and computes in float32: the Trace stores attention in float16).
"""

from __future__ import annotations

import numpy as np

from var_core.config import VARConfig
from var_core.inputs import listed
from var_core.layout import on_cells, view_box
from var_core.trace import Trace, answer_rows, attention_source, take_rows

QUERY_MODES = ("all", "answer", "prompt")


def prompt_rows(trace: Trace) -> np.ndarray:
    """Indices into the query axis of the prompt rows after the image that do not predict an answer token."""
    return np.nonzero(trace.query_positions < trace.n_prompt - 1)[0]


def query_rows(trace: Trace, query: int | str = "all") -> np.ndarray:
    """The query rows `query` names (see module docstring); ValueError when it names none."""
    n_q = len(trace.query_positions)
    if isinstance(query, (int, np.integer)) and not isinstance(query, bool):
        if not -n_q <= query < n_q:
            raise ValueError(f"query={query} is out of range: this trace has {n_q} query rows (0 … {n_q - 1})")
        return np.array([query % n_q])
    if query == "all":
        rows = np.arange(n_q)
    elif query == "answer":
        rows = answer_rows(trace)
    elif query == "prompt":
        rows = prompt_rows(trace)
    else:
        raise ValueError(f"query={query!r} must be a row index or one of {QUERY_MODES}")
    if len(rows) == 0:
        raise ValueError(f"query={query!r} selects no rows: this trace captured {n_q} query rows "
                         f"(n_prompt={trace.n_prompt}); pick another query")
    return rows


def query_label(trace: Trace, query: int | str = "all") -> str:
    """Human-readable name of a query selection, for titles."""
    if isinstance(query, str):
        return {"all": "mean over all text queries", "answer": "mean over answer tokens",
                "prompt": "mean over prompt tokens"}.get(query, query)
    row = query_rows(trace, query)[0]
    return f"query {row} {trace.tokens[trace.query_positions[row]].strip()!r}"


def head_label(head: int | None) -> str:
    """'head h' or 'mean over heads'."""
    return "mean over heads" if head is None else f"head {head}"


def check_layer_head(trace: Trace, layer: int, head: int | None = None) -> None:
    """ValueError naming the valid range when `layer` or `head` does not exist."""
    if not 0 <= layer < trace.num_layers:
        raise ValueError(f"layer={layer} does not exist: the trace has layers 0 … {trace.num_layers - 1}")
    if head is not None and not 0 <= head < trace.num_heads:
        raise ValueError(f"head={head} does not exist: the trace has heads 0 … {trace.num_heads - 1}")


def captured_slot(trace: Trace, layer: int, head: int | None = None) -> int:
    """Index of model layer `layer` on the captured arrays' first axis, after `check_layer_head`; ValueError naming
    the captured layers when `layer` exists but its attention was not captured."""
    check_layer_head(trace, layer, head)
    return trace.layer_slot(int(layer))


def layers_note(trace: Trace) -> str:
    """'' when every layer was captured, else ' (captured layers: 1, 3)' for titles of views over layers."""
    layers = trace.layers_captured
    if len(layers) == trace.num_layers:
        return ""
    shown = listed(layers, 8, last=True)
    return f" (captured layers: {shown})"


def layer_spans(layers) -> str:
    """'2–10, 14' for layers 2 … 10 and 14 (sorted runs), 'none' for no layer: layer sets in titles and notes."""
    layers = sorted(int(layer) for layer in layers)
    runs: list[list[int]] = []
    for layer in layers:
        if runs and layer == runs[-1][1] + 1:
            runs[-1][1] = layer
        else:
            runs.append([layer, layer])
    return ", ".join(f"{low}–{high}" if high > low else f"{low}" for low, high in runs) or "none"


def view_of(trace: Trace, view: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(image, cells) of the canvas box `view` (a name of `trace.view_list`; None: the whole canvas)."""
    top, left, bottom, right = view_box(trace.view_list, view)
    (rows, cols), (height, width) = trace.grid, trace.image.shape[:2]
    image = trace.image[top * height // rows:bottom * height // rows, left * width // cols:right * width // cols]
    return image, trace.cell_map[top:bottom, left:right]


def view_outlines(trace: Trace, view: str | None = None) -> list[list[int]]:
    """The boxes of a tiled model's views, to outline on the whole canvas (none when one view is drawn alone)."""
    whole = trace.view_list[0]["name"]
    return [v["box"] for v in trace.view_list[1:]] if view is None or view == whole else []


def attention_values(trace: Trace, layer: int, head: int | None = None, query: int | str = "all",
                     raw: bool = False) -> np.ndarray:
    """[N_vis] text→visual attention at `layer`, for `head` (None = mean) and `query`, in token order."""
    slot = captured_slot(trace, layer, head)
    rows = query_rows(trace, query)
    attn = take_rows(attention_source(trace, raw)[slot:slot + 1], rows)[0].mean(1, dtype=np.float32)
    return attn.mean(0) if head is None else attn[head]


def attention_map(trace: Trace, layer: int, head: int | None = None, query: int | str = "all",
                  raw: bool = False, view: str | None = None) -> np.ndarray:
    """[rows, cols] `attention_values` on the cells of `view` (None: the whole canvas; NaN where no token)."""
    return on_cells(attention_values(trace, layer, head, query, raw), view_of(trace, view)[1])


def head_maps(trace: Trace, query: int | str = "all", raw: bool = False, view: str | None = None) -> np.ndarray:
    """[k, H, rows, cols] every head's map for `query` over the cells of `view`, for the captured layers."""
    values = take_rows(attention_source(trace, raw), query_rows(trace, query)).mean(2, dtype=np.float32)
    return on_cells(values, view_of(trace, view)[1])


def selected_heads(trace: Trace, query: int | str = "all") -> np.ndarray:
    """[k, H] bool: heads of the captured layers selected as image-centric in at least one of the `query` rows."""
    return take_rows(trace.selected, query_rows(trace, query)).any(-1)


def head_stats(trace: Trace, query: int | str = "all") -> tuple[np.ndarray, np.ndarray]:
    """([k, H] mean ratio r, [k, H] mean visual mass) of the captured layers over the `query` rows (before VAR)."""
    rows = query_rows(trace, query)
    return (take_rows(trace.ratio, rows).mean(-1, dtype=np.float32),
            take_rows(trace.visual_mass, rows).mean(-1, dtype=np.float32))


def var_layers(trace: Trace) -> list[int]:
    """The layers VAR acts on in this run; a baseline records none, so the default ones (2 … L−2) it would act on."""
    return list(trace.settings.get("var_layers") or VARConfig().resolve_layers(trace.num_layers))


def acting_layers(trace: Trace) -> np.ndarray:
    """[k] bool over the captured layers: a VAR layer with a visual sink (VAR leaves every other layer untouched)."""
    layers = trace.layers_captured
    has_sinks = trace.sink_mask[np.ix_(layers, trace.all_image_positions)].any(1)
    return np.isin(layers, var_layers(trace)) & has_sinks


def var_heads(trace: Trace, query: int | str = "all") -> np.ndarray:
    """[k, H] bool: the (layer, head) pairs VAR acts on, image-centric in a `query` row of a layer it acts on."""
    return selected_heads(trace, query) & acting_layers(trace)[:, None]
