"""Capture memory scales with L·H·T_text·N_vis, never L·T²: Trace size and peak RSS on a synthetic model.

Run: `python -m bench.bench_memory`. Each configuration runs in a fresh process (so peak RSS is its own) on a
random 8-layer tiny LLaVA, with prompts of 32/128/512 words and 64 or 576 visual tokens, VAR on, 8 new tokens.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
from PIL import Image

from bench.common import changed_rows, peak_rss_mib, write

PROMPT_WORDS, VISUAL = (32, 128, 512), {64: (32, 4), 576: (48, 2)}  # N_vis → (image size, patch)
LAYERS, NEW_TOKENS = 8, 8


def measure_one(words: int, n_visual: int) -> dict:
    """Run one configuration in this process; return sizes in MiB."""
    from tests.tiny_llava import WORDS, tiny_llava
    from var_core.config import VARConfig
    from var_core.run import generate

    image_size, patch = VISUAL[n_visual]
    bundle = tiny_llava(image_size=image_size, patch=patch, layers=LAYERS)
    prompt = " ".join(WORDS[i % 20] for i in range(words))
    image = Image.fromarray((np.random.RandomState(0).rand(image_size, image_size, 3) * 255).astype("uint8"))
    trace = generate(bundle, image, prompt, config=VARConfig(tau=1.0), max_new_tokens=NEW_TOKENS)
    captured = sum(a.nbytes for a in (trace.attn_to_visual, trace.attn_to_visual_raw, trace.visual_mass,
                                      trace.sink_mass, trace.ratio, trace.selected))
    tokens = len(trace.tokens)
    full = LAYERS * bundle.num_heads * tokens * tokens * 4 * 2  # what keeping full T×T attention (×2) would cost
    return {"prompt_words": words, "n_visual": n_visual, "tokens": tokens, "queries": len(trace.query_positions),
            "var_changed_rows": changed_rows(trace),
            "captured_mib": captured / 2**20, "full_attention_mib": full / 2**20,
            "peak_rss_mib": peak_rss_mib()}


def main() -> dict:
    rows = []
    for n_visual in VISUAL:
        for words in PROMPT_WORDS:
            out = subprocess.run([sys.executable, "-m", "bench.bench_memory", str(words), str(n_visual)],
                                 capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            row = rows[-1]
            print(f"N_vis {n_visual:4d}  prompt {words:4d} words  T {row['tokens']:5d}  Q {row['queries']:4d}  "
                  f"captured {row['captured_mib']:7.2f} MiB  (full T×T would be {row['full_attention_mib']:8.1f} MiB)"
                  f"  peak RSS {row['peak_rss_mib']:6.0f} MiB")
    per_cell = [r["captured_mib"] / (r["queries"] * r["n_visual"]) for r in rows]
    linear = max(per_cell) / min(per_cell) < 1.2  # bytes per (query × visual token) is constant
    acted = min(row["var_changed_rows"] for row in rows)
    checks = [{"figure": "capture memory bench: VAR changed rows in every configuration", "target": "> 0 (VAR acts)",
               "measured": f"at least {acted} rows", "pass": acted > 0},
              {"figure": "capture memory ∝ L·H·Q·N_vis (bytes per query×visual token constant)",
               "target": "ratio max/min < 1.2", "measured": f"{max(per_cell) / min(per_cell):.3f}", "pass": linear}]
    write("memory", {"layers": LAYERS, "new_tokens": NEW_TOKENS, "rows": rows, "checks": checks})
    return {"checks": checks}


if __name__ == "__main__":
    if len(sys.argv) == 3:
        print(json.dumps(measure_one(int(sys.argv[1]), int(sys.argv[2]))))
    else:
        main()
