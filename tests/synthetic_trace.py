"""Synthetic `Trace`s with planted facts (a sink patch, image-centric heads, a ranking) for view tests and benches."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from var_core.trace import Trace

CAPTURED = ("attn_to_visual", "attn_to_visual_raw", "visual_mass", "sink_mass", "ratio", "selected")  # [k, …] arrays

PROMPT_WORDS = ["what", "colour", "is", "the", "square", "?", "ASSISTANT", ":"]
ANSWER_WORDS = ["the", "square", "is", "red", "</s>"]


def synthetic_trace(layers: int = 4, heads: int = 3, grid: tuple[int, int] = (3, 5), sink: tuple[int, int] = (1, 3),
                    hidden: int = 64, image_size: tuple[int, int] | None = None, var: bool = True,
                    answer_tokens: int = 5, seed: int = 0) -> Trace:
    """A Trace whose facts are known by construction.

    - the visual token at grid cell `sink` (row, col) is a sink (φ = 3·τ) in layers ≥ 1, and takes most of
      every head's visual attention, except in head 0 of every layer whose peak is at cell (0, 0);
    - head h of layer l has visual mass 0.1 + 0.8·(l·heads + h)/(layers·heads) (a strict ranking) and its
      non-sink ratio r is 0.9 for head 0, 0.2 otherwise; selected = mass ≥ 0.2 & r ≥ 0.5;
    - VAR (p = 0.5) halves the sink column in selected rows and gives the budget to the other visual tokens.
    Tokens: <s> USER :, <image>·N_vis, 8 prompt words, then `answer_tokens` answer words; Q = 8 + answer_tokens − 1
    rows (the last answer token is never fed back).
    """
    rng = np.random.default_rng(seed)
    rows, cols = grid
    n_vis = rows * cols
    answer = [ANSWER_WORDS[i % (len(ANSWER_WORDS) - 1)] for i in range(answer_tokens - 1)] + ["</s>"]
    tokens = ["<s>", "USER", ":"] + ["<image>"] * n_vis + PROMPT_WORDS + answer
    first_visual = 3
    visual_positions = np.arange(first_visual, first_visual + n_vis)
    n_prompt = first_visual + n_vis + len(PROMPT_WORDS)
    query_positions = np.arange(first_visual + n_vis, len(tokens) - 1)
    n_q = len(query_positions)
    sink_index = sink[0] * cols + sink[1]
    tau = 2.0

    phi = rng.uniform(0.2, 1.0, size=(layers, n_prompt)).astype(np.float32)
    phi[:, 0] = 3.5 * tau  # BOS is a text sink everywhere
    phi[1:, visual_positions[sink_index]] = 3.0 * tau
    sink_mask = phi > tau

    order = np.arange(layers * heads).reshape(layers, heads)
    mass = (0.1 + 0.8 * order / (layers * heads)).astype(np.float32)
    ratio = np.where(np.arange(heads)[None, :] == 0, 0.9, 0.2).astype(np.float32)
    ratio = np.broadcast_to(ratio, (layers, heads)).copy()
    ratio[0] = 1.0  # no visual sink in layer 0, so every head there is all non-sink
    visual_mass = np.repeat(mass[:, :, None], n_q, axis=2)
    ratio_q = np.repeat(ratio[:, :, None], n_q, axis=2)
    selected = (visual_mass >= 0.2) & (ratio_q >= 0.5)

    attn = np.zeros((layers, heads, n_q, n_vis), dtype=np.float32)
    for layer in range(layers):
        for head in range(heads):
            shares = rng.uniform(0.5, 1.0, size=(n_q, n_vis)).astype(np.float32)
            if layer == 0:
                planted = {0: 0.5}
            elif head == 0:
                planted = {0: 0.5, sink_index: 1.0 - ratio[layer, head]}
            else:
                planted = {sink_index: 1.0 - ratio[layer, head]}
            rest = [j for j in range(n_vis) if j not in planted]
            shares[:, rest] *= (1.0 - sum(planted.values())) / shares[:, rest].sum(-1, keepdims=True)
            for index, share in planted.items():
                shares[:, index] = share
            attn[layer, head] = shares * mass[layer, head]
    raw = attn.copy()
    sink_mass = visual_mass * (1.0 - ratio_q) + 0.05
    if var:
        for layer in range(1, layers):
            rows_sel = selected[layer]
            moved = 0.5 * raw[layer, :, :, sink_index] * rows_sel
            others = raw[layer].copy()
            others[..., sink_index] = 0.0
            share = others / others.sum(-1, keepdims=True)
            attn[layer] = raw[layer] + moved[..., None] * share
            attn[layer, :, :, sink_index] -= moved

    image = np.zeros((*(image_size or (rows * 16, cols * 16)), 3), dtype=np.uint8)
    image[..., 1] = 200
    profile = np.abs(rng.normal(size=(3, hidden))).astype(np.float32)
    profile[:2, [5, 17]] = [[0.9 * np.sqrt(hidden), 0.5 * np.sqrt(hidden)], [0.7 * np.sqrt(hidden), 0.2]]
    return Trace(
        model_name="synthetic", prompt=" ".join(PROMPT_WORDS[:6]), answer=" ".join(answer[:-1]), tokens=tokens,
        n_prompt=n_prompt, image=image, grid=(rows, cols), visual_positions=visual_positions,
        image_token_positions=visual_positions, query_positions=query_positions, phi=phi, sink_mask=sink_mask,
        attn_to_visual=attn, attn_to_visual_raw=raw if var else None, visual_mass=visual_mass,
        sink_mass=sink_mass.astype(np.float32), ratio=ratio_q, selected=selected, profile_hidden=profile,
        profile_tokens=np.array([0, visual_positions[sink_index], visual_positions[0]]),
        profile_layer=layers // 2,
        settings={"model": "synthetic", "sink_dims": [5, 17], "tau": tau, "rho": 0.5, "min_visual_mass": 0.2,
                  "p": 0.5 if var else None, "var_layers": list(range(1, layers)), "recycle_text_sinks": True},
    )


def partial_trace(trace: Trace, layers: Sequence[int]) -> Trace:
    """`trace` as `generate(..., capture_layers=layers)` would have kept it: the captured arrays cut to `layers` (in
    that order), attention in float16; φ, sinks and the layer count stay those of every layer."""
    layers = list(layers)
    cut = {name: getattr(trace, name)[layers] for name in CAPTURED if getattr(trace, name) is not None}
    for name in ("attn_to_visual", "attn_to_visual_raw"):
        if name in cut:
            cut[name] = cut[name].astype(np.float16)
    return dataclasses.replace(trace, **cut, captured_layers=layers)


def layer_marked_trace(layers: int = 4, captured: Sequence[int] = (1, 3), **options) -> Trace:
    """A partial `synthetic_trace` whose attention says which layer it came from: at model layer l every head and
    query puts 0.9 of its visual attention on visual token l (0.1 spread over the rest), so a view that picks the
    wrong layer shows the wrong bright patch."""
    full = synthetic_trace(layers=layers, **options)
    n_vis = full.attn_to_visual.shape[-1]
    marked = np.full(full.attn_to_visual.shape, 0.1 / (n_vis - 1), dtype=np.float32)
    for layer in range(layers):
        marked[layer, ..., layer] = 0.9
    raw = None if full.attn_to_visual_raw is None else marked.copy()
    return partial_trace(dataclasses.replace(full, attn_to_visual=marked, attn_to_visual_raw=raw), captured)
