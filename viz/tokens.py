"""View 7: the prompt and answer as a token strip for `gr.HighlightedText`, each text query coloured by how much
it attends to the image (its visual mass, before VAR)."""

from __future__ import annotations

import numpy as np

from var_core.trace import Trace
from viz.queries import captured_slot, query_rows


def entries(trace: Trace) -> list[tuple[str, int | None]]:
    """(text, query row or None) per displayed token; each run of image tokens collapses into one entry."""
    image = set(trace.all_image_positions.tolist())
    row_of = {int(position): row for row, position in enumerate(trace.query_positions)}
    entries: list[tuple[str, int | None]] = []
    run = 0
    for position, token in enumerate(trace.tokens):
        if position in image:
            run += 1
            continue
        if run:
            entries.append((f"[image: {run} tokens] ", None))
            run = 0
        text = token.replace("\n", "↵").strip() or repr(token)
        entries.append((text + " ", row_of.get(position)))
    if run:
        entries.append((f"[image: {run} tokens] ", None))
    return entries


def strip_scores(trace: Trace, layer: int | None = None, head: int | None = None) -> np.ndarray:
    """[Q] visual mass of each query row at `layer` (None = mean over the captured layers), `head` (None = mean over
    heads)."""
    slot = captured_slot(trace, trace.layers_captured[0] if layer is None else layer, head)
    mass = (trace.visual_mass if layer is None else trace.visual_mass[slot:slot + 1]).mean(0, dtype=np.float32)
    return mass.mean(0) if head is None else mass[head]


def token_strip(trace: Trace, layer: int | None = None, head: int | None = None, relative: bool = False,
                query: int | str | None = None) -> list[tuple[str, float | None]]:
    """[(token, score)] for `gr.HighlightedText`: score = `strip_scores` of that token's query row, in [0, 1];
    None for tokens that are not query rows (text before the image, the image itself, the last generated
    token). relative=True divides by the largest score so faint strips use the full colour range. query: the
    selected query row, its token shown as ▸token◂ (a mode such as "all" marks none)."""
    selected = None if query is None or isinstance(query, str) else int(query_rows(trace, query)[0])
    return scored_entries(trace, strip_scores(trace, layer, head), relative, selected)


def scored_entries(trace: Trace, scores: np.ndarray, relative: bool,
                   selected: int | None = None) -> list[tuple[str, float | None]]:
    """`entries` with each query row's score [Q] (divided by the largest when `relative`, unless all are 0), the
    text of row `selected` wrapped as ▸text◂."""
    peak = float(scores.max()) if relative and scores.size and scores.max() > 0 else 1.0
    return [(f"▸{text.rstrip()}◂ " if row is not None and row == selected else text,
             None if row is None else round(float(scores[row]) / peak, 4)) for text, row in entries(trace)]


def strip_rows(trace: Trace) -> list[int | None]:
    """Query row of each entry of `token_strip` (None where the entry is not a query): maps a click on the
    strip (`gr.SelectData.index`) to the `query` argument of the other views."""
    return [row for _, row in entries(trace)]
