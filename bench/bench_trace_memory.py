"""Trace bytes per Analyze for a Qwen2-VL-7B-shaped model, all layers captured vs k of them, extrapolated to 28.

Run: `python -m bench.bench_trace_memory`. A random Qwen2-VL of the real text width (3584, 28 heads, 4 KV heads) with
LAYERS decoder layers (a CPU cannot hold 28; the MLP is narrowed and the vision tower small: neither enters the Trace) sees photos of 1,280 and 5,300 visual tokens (the processor's real 28-px tokens), with VAR (raw copy kept)
and NEW_TOKENS new tokens. Every captured array's nbytes is summed, for capture_layers = k = 1 … LAYERS; the check
is that bytes ∝ k and equal `var_core.memory.trace_bytes` (k·H·Q·(2·N·2 + 13)), which then gives the figure for
all 28 layers and 128 new tokens. Writes bench/results/trace_memory.json.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from bench.common import qwen2_vl_7b_shaped, write
from var_core import memory
from var_core.config import VARConfig
from var_core.run import generate

LAYERS, NEW_TOKENS, REAL_LAYERS, REAL_NEW_TOKENS = 2, 4, 28, 128
PHOTOS = {1280: (896, 1120), 5300: (1484, 2800)}  # visual tokens → (height, width) px, 28 px per token
PROMPT = "what colour is the square ?"


def trace_nbytes(trace) -> int:
    """Every captured array's bytes (what one run adds to the session's state)."""
    arrays = (trace.attn_to_visual, trace.attn_to_visual_raw, trace.visual_mass, trace.sink_mass, trace.ratio,
              trace.selected)
    return sum(array.nbytes for array in arrays if array is not None)


def measure(bundle, n_visual: int) -> dict:
    """Trace bytes with k = 1 … LAYERS captured layers at `n_visual` visual tokens, and the 28-layer figure."""
    height, width = PHOTOS[n_visual]
    bundle.extra["visual_token_budget"] = n_visual  # the photo's own count, above the default budget at 5,300
    image = Image.fromarray((np.random.RandomState(0).rand(height, width, 3) * 255).astype("uint8"))
    rows = []
    for k in range(1, LAYERS + 1):
        trace = generate(bundle, image, PROMPT, config=VARConfig(), max_new_tokens=NEW_TOKENS,
                         capture_layers=list(range(k)))
        queries, visual = len(trace.query_positions), len(trace.visual_positions)
        rows.append({"k": k, "bytes": trace_nbytes(trace), "query_rows": queries, "visual_tokens": visual,
                     "formula": memory.trace_bytes(bundle.num_heads, queries, visual, k, var=True)})
    text_rows = rows[0]["query_rows"] - (NEW_TOKENS - 1)  # the prompt's rows after the image
    real_queries = text_rows + REAL_NEW_TOKENS - 1
    return {"n_visual": rows[0]["visual_tokens"], "tokens": len(trace.tokens), "rows": rows,
            "extrapolated_28_layers_bytes": memory.trace_bytes(bundle.num_heads, real_queries,
                                                               rows[0]["visual_tokens"], REAL_LAYERS, var=True),
            "extrapolated_query_rows": real_queries}


def main() -> dict:
    bundle = qwen2_vl_7b_shaped(layers=LAYERS, vision_depth=1, vision_width=128, intermediate=256, vocab=0)
    results, checks = [], []
    for n_visual in PHOTOS:
        result = measure(bundle, n_visual)
        results.append(result)
        per_layer = [row["bytes"] / row["k"] for row in result["rows"]]
        exact = all(row["bytes"] == row["formula"] for row in result["rows"])
        print(f"N_vis {result['n_visual']:5d}  T {result['tokens']:5d}  " + "  ".join(
            f"k={row['k']}: {row['bytes'] / 2**20:7.1f} MiB" for row in result["rows"]) +
            f"  → 28 layers, {REAL_NEW_TOKENS} new tokens: {result['extrapolated_28_layers_bytes'] / 1e9:.2f} GB")
        checks.append({"figure": f"trace memory, Qwen2-VL-7B-shaped, {result['n_visual']:,} visual tokens: bytes per "
                                 f"captured layer, k = 1 … {LAYERS}",
                       "target": "∝ k, = k·H·Q·(4·N + 13)",
                       "measured": f"{per_layer[0] / 2**20:.2f} MiB per layer (max/min {max(per_layer) / min(per_layer):.3f}"
                                   f"{', exact' if exact else ', formula differs'}); 28 layers × {REAL_NEW_TOKENS} "
                                   f"new tokens: {result['extrapolated_28_layers_bytes'] / 1e9:.2f} GB",
                       "pass": exact and max(per_layer) == min(per_layer)})
    write("trace_memory", {"layers": LAYERS, "new_tokens": NEW_TOKENS, "heads": bundle.num_heads,
                           "results": results, "checks": checks})
    return {"checks": checks}


if __name__ == "__main__":
    main()
