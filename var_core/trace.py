"""`Trace`: everything one model run produced that the views and the UI read (CPU numpy only).

Naming follows the method: `layer`, `head`, `query` (a captured text query row), `visual` (index into the
visual tokens, raster order over `grid`). Attention is sliced text→visual, never the full T×T matrix.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from var_core.inputs import listed
from var_core.layout import raster, whole_view

ARRAY_FIELDS = ("image", "visual_positions", "image_token_positions", "query_positions", "phi", "sink_mask", "attn_to_visual",
                "attn_to_visual_raw", "visual_mass", "sink_mass", "ratio", "selected", "profile_hidden",
                "profile_tokens", "top_token_ids", "top_probs", "cells")


@dataclass
class Trace:
    """One run: tokens, where the image is, φ per layer, head statistics and text→visual attention.

    tokens: all token strings (prompt then generated); n_prompt: how many are prompt.
    image: [H, W, 3] uint8 as the model saw it (tiled models: the canvas of `var_core.layout`, tiles in place and
    the global view beside them). grid: (rows, cols) of the canvas's token cells.
    visual_positions: [N_vis] token indices of every visual token, token order; cells: [rows, cols] the index into
    them drawn at each grid cell (`var_core.layout.HOLE`: none); views: the canvas's named boxes. Traces saved
    before cells existed drew one view (cells None: raster order, N_vis = rows·cols) and list every visual token
    in image_token_positions (incl. tiles they did not draw). query_positions: [Q] token index of each
    captured query row (prompt text after the image, then each decoded token that was fed back).
    phi, sink_mask: [L, T_prompt] φ(x) entering each layer and φ > τ, over all prompt tokens.
    attn_to_visual: [k, H, Q, N_vis] float16 attention the model used, over the k `captured_layers` in order;
    attn_to_visual_raw: same before VAR (None in a run without VAR). visual_mass, sink_mass, ratio: [k, H, Q]
    attention to the image, to all sink tokens, and visual non-sink ratio r, before VAR. selected: [k, H, Q]
    image-centric rows (the rule is applied in baseline runs too, so a baseline shows which heads VAR would touch).
    captured_layers: the model layers those arrays cover (None: all, as traces saved before it existed).
    profile_hidden: [3, D] |x|/RMS(x) at `profile_layer` (the layer where the largest visual φ appears) for the tokens
    `profile_tokens` (BOS, the strongest visual sink candidate, a typical visual token) — the massive-activation view.
    top_token_ids, top_probs: [S, 5] the 5 likeliest next tokens at each of the S decoding steps and their
    probabilities (float32 softmax of the scores generate chose from); top_tokens: their text (None: traces saved
    before they were recorded).
    settings: model name, sink dims, τ, ρ, p (None = baseline), VAR layers, etc.
    """

    model_name: str
    prompt: str
    answer: str
    tokens: list[str]
    n_prompt: int
    image: np.ndarray
    grid: tuple[int, int]
    visual_positions: np.ndarray
    query_positions: np.ndarray
    phi: np.ndarray
    sink_mask: np.ndarray
    attn_to_visual: np.ndarray
    visual_mass: np.ndarray
    sink_mass: np.ndarray
    ratio: np.ndarray
    selected: np.ndarray
    profile_hidden: np.ndarray
    profile_tokens: np.ndarray
    profile_layer: int
    settings: dict = field(default_factory=dict)
    image_token_positions: np.ndarray | None = None
    attn_to_visual_raw: np.ndarray | None = None
    captured_layers: list[int] | None = None
    top_token_ids: np.ndarray | None = None
    top_probs: np.ndarray | None = None
    top_tokens: list[list[str]] | None = None
    cells: np.ndarray | None = None
    views: list[dict] | None = None

    @property
    def num_layers(self) -> int:
        """The model's layer count (φ is recorded entering every layer; attention only at `layers_captured`)."""
        return self.phi.shape[0]

    @property
    def layers_captured(self) -> list[int]:
        """The layers the captured arrays cover, in their order."""
        return list(range(self.num_layers)) if self.captured_layers is None else list(self.captured_layers)

    def layer_slot(self, layer: int) -> int:
        """Index of model layer `layer` on the captured arrays' first axis; a ValueError if it was not captured."""
        layers = self.layers_captured
        if layer in layers:
            return layers.index(layer)
        shown = listed(layers, 8)
        raise ValueError(f"layer {layer} was not captured (captured: {shown}); analyze again capturing it")

    @property
    def cell_map(self) -> np.ndarray:
        """[rows, cols] index into `visual_positions` of the token drawn at each grid cell (HOLE: none)."""
        return self.cells if self.cells is not None else raster(len(self.visual_positions), *self.grid)

    @property
    def view_list(self) -> list[dict]:
        """The canvas's named boxes, the whole canvas first (`var_core.layout.TokenLayout.views`)."""
        return self.views or [whole_view(*self.grid)]

    @property
    def num_heads(self) -> int:
        return self.attn_to_visual.shape[1]

    @property
    def var_applied(self) -> bool:
        return self.settings.get("p") is not None

    @property
    def var_layer_sinks(self) -> int:
        """How many (VAR layer, image token) pairs were sinks (φ > τ) in this run: what VAR could redistribute."""
        layers = np.asarray(self.settings.get("var_layers") or [], dtype=np.int64)
        return int(self.sink_mask[np.ix_(layers, self.all_image_positions)].sum())

    @property
    def warnings(self) -> list[str]:
        """Why VAR did nothing in this run, computed from it (its layers, sink mask and p); empty when it could act
        or the run is a baseline."""
        s = self.settings
        if not self.var_applied:
            return []
        layers = s.get("var_layers") or []
        if not layers:
            return [f"VAR did nothing: it acts in no layer of this {self.num_layers}-layer model; choose VAR layers"]
        if s["p"] == 0:
            return ["VAR did nothing: p = 0 moves no attention; raise p"]
        text_sinks_recycled = s.get("select_heads") is False and s.get("recycle_text_sinks") \
            and self.sink_mask[layers].any()  # the ablation without head selection recycles BOS and other text sinks
        if self.var_layer_sinks or text_sinks_recycled:
            return []
        largest = float(self.phi[np.ix_(layers, self.all_image_positions)].max(initial=0.0))
        return [f"VAR did nothing: no visual sink at τ = {s['tau']:g} in its {layer_span(layers)} (largest visual "
                f"φ in the VAR layers: {largest:.2f} ≤ τ); lower τ below {largest:.2f} for VAR to act"]

    @property
    def all_image_positions(self) -> np.ndarray:
        """Token indices of every image token, also tiles not drawn on the grid (else the grid's own)."""
        return self.visual_positions if self.image_token_positions is None else self.image_token_positions

    @property
    def phi_visual(self) -> np.ndarray:
        """[L, N_vis] φ of the visual tokens."""
        return self.phi[:, self.visual_positions]

    @property
    def visual_sinks(self) -> np.ndarray:
        """[L, N_vis] bool, visual tokens with φ > τ at each layer."""
        return self.sink_mask[:, self.visual_positions]

    @property
    def query_tokens(self) -> list[str]:
        return [self.tokens[i] for i in self.query_positions]

    def save(self, path) -> Path:
        """Write as a pickle-free `.npz` (metadata as a JSON string)."""
        arrays = {name: getattr(self, name) for name in ARRAY_FIELDS if getattr(self, name) is not None}
        meta = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ARRAY_FIELDS}
        path = Path(path)
        np.savez_compressed(path, meta=np.array(json.dumps(meta)), **arrays)
        return path

    @classmethod
    def load(cls, path) -> "Trace":
        """Read a `.npz` written by `save`; never unpickles."""
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            arrays = {name: data[name] for name in ARRAY_FIELDS if name in data}
        meta["grid"] = tuple(meta["grid"])
        return cls(**meta, **arrays)

    def _repr_html_(self) -> str:
        """Jupyter: a compact summary and the key picture (drawn by `viz.notebook`, imported only here)."""
        from viz.notebook import trace_html

        return trace_html(self)

    def first_top(self) -> list[tuple[str, float]] | None:
        """[(token, probability)] of the 5 likeliest first answer tokens, likeliest first (None: not recorded)."""
        if self.top_probs is None or not len(self.top_probs):
            return None
        return [(token, float(p)) for token, p in zip(self.top_tokens[0], self.top_probs[0])]

    def summary(self) -> dict:
        """JSON-friendly summary: answer, the 5 likeliest first answer tokens, per-layer visual sink counts/positions,
        selected heads (model layer, head) with r, over the captured layers, settings and `warnings`."""
        image_tokens = self.all_image_positions
        heads = []
        layers = self.layers_captured
        for slot, head in zip(*np.nonzero(self.selected.any(-1))):
            rows = self.selected[slot, head]
            heads.append({"layer": layers[slot], "head": int(head), "rows": int(rows.sum()),
                          "r": float(self.ratio[slot, head][rows].mean()),
                          "visual_mass": float(self.visual_mass[slot, head][rows].mean())})
        sinks = []
        for layer in range(self.num_layers):
            positions = image_tokens[self.sink_mask[layer, image_tokens]]
            sinks.append({"layer": layer, "count": int(len(positions)), "token_positions": positions.tolist(),
                          "grid_indices": np.nonzero(self.visual_sinks[layer])[0].tolist()})
        return {"answer": self.answer, "first_token_top5": self.first_top(), "sinks": sinks, "heads": heads,
                "settings": self.settings, "warnings": self.warnings}


def layer_span(layers) -> str:
    """'layer 2', 'layers 2–14' (consecutive) or 'layers 0, 4, 8 … 31': layers in a message."""
    layers = list(layers)
    if len(layers) == 1:
        return f"layer {layers[0]}"
    if layers == list(range(layers[0], layers[-1] + 1)):
        return f"layers {layers[0]}–{layers[-1]}"
    return f"layers {listed(layers, 6, last=True)}"


def answer_rows(trace: Trace) -> np.ndarray:
    """Indices into the query axis of the rows that predict answer tokens (position ≥ n_prompt − 1)."""
    return np.nonzero(trace.query_positions >= trace.n_prompt - 1)[0]


def attention_source(trace: Trace, raw: bool = False) -> np.ndarray:
    """[k, H, Q, N_vis] attention used (raw=False) or before VAR (raw=True; the same array in a baseline)."""
    if raw and trace.attn_to_visual_raw is not None:
        return trace.attn_to_visual_raw
    return trace.attn_to_visual


def take_rows(array: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """array[:, :, rows] as a view when the rows are contiguous (no copy of a large attention array)."""
    if len(rows) and rows[-1] - rows[0] + 1 == len(rows):
        return array[:, :, rows[0]:rows[-1] + 1]
    return array[:, :, rows]
