"""Time every view on LLaVA-sized and default-model-sized synthetic Traces; write bench/results/views.json.

Run: `python -m bench.bench_views`. Chart views are timed build + Agg render (what the browser gets); image views
build the PIL image. Median of REPS runs after one warm-up. Budget: 150 ms per view.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path

import matplotlib
import numpy as np
import PIL

from tests.synthetic_trace import synthetic_trace
from viz.compare import before_after
from viz.diff import answer_diff
from viz.evidence import massive_activations, phi_attention_scatter, sink_attention_by_layer
from viz.figures import figure_image
from viz.grid import head_grid
from viz.heatmap import attention_heatmap
from viz.ranking import head_ranking, top_heads_table
from viz.sinks import phi_overlay, sink_count_strip
from viz.tokens import token_strip

REPS = 7
BUDGET_MS = 150.0
OUT = Path(__file__).parent / "results" / "views.json"
SHAPES = {  # name: (layers, heads, grid, hidden, image side, answer tokens)
    "default 30x9 (8x8 grid)": (30, 9, (8, 8), 576, 128, 32),
    "LLaVA-7B 32x32 (24x24 grid)": (32, 32, (24, 24), 4096, 336, 40),
}


def views(trace) -> dict:
    """name → zero-argument callable producing the view (figures rendered)."""
    mid = trace.num_layers // 2
    return {
        "heatmap (mean heads, answer, log)": lambda: attention_heatmap(trace, mid, None, "answer", log=True),
        "head grid (tile scale, tile 48)": lambda: head_grid(trace, "answer", tile=48),
        "head grid (shared log scale)": lambda: head_grid(trace, "all", scale="shared", log=True, tile=48),
        "phi overlay": lambda: phi_overlay(trace, mid),
        "sink count strip": lambda: figure_image(sink_count_strip(trace, mid)),
        "head ranking (top 24)": lambda: figure_image(head_ranking(trace, "answer")),
        "top heads table": lambda: top_heads_table(trace, 10),
        "before/after VAR": lambda: before_after(trace, mid, None, "answer"),
        "phi vs attention scatter": lambda: figure_image(phi_attention_scatter(trace, mid)),
        "massive activations": lambda: figure_image(massive_activations(trace)),
        "sink attention by layer": lambda: figure_image(sink_attention_by_layer(trace)),
        "token strip": lambda: token_strip(trace),
        "answer diff": lambda: answer_diff(trace.answer, trace.answer.replace("red", "blue")),
    }


def time_ms(view) -> list[float]:
    """REPS wall-clock timings in ms after one warm-up."""
    view()
    times = []
    for _ in range(REPS):
        start = time.perf_counter()
        view()
        times.append((time.perf_counter() - start) * 1000)
    return times


def machine() -> dict:
    """What the numbers were measured on."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "numpy": np.__version__, "matplotlib": matplotlib.__version__, "pillow": PIL.__version__,
            "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()]}  # other jobs inflate the timings


def main() -> dict:
    results = {"machine": machine(), "reps": REPS, "budget_ms": BUDGET_MS, "shapes": {}}
    checks = []
    print(f"{'shape':30s} {'view':36s} {'median ms':>10s} {'min ms':>8s}  ok")
    for shape, (layers, heads, grid, hidden, side, answer) in SHAPES.items():
        trace = synthetic_trace(layers, heads, grid, sink=(grid[0] // 2, grid[1] // 3), hidden=hidden,
                                image_size=(side, side), answer_tokens=answer)
        rows = {}
        for name, view in views(trace).items():
            times = time_ms(view)
            median = statistics.median(times)
            rows[name] = {"median_ms": round(median, 1), "min_ms": round(min(times), 1), "ok": median <= BUDGET_MS}
            print(f"{shape:30s} {name:36s} {median:10.1f} {min(times):8.1f}  {'yes' if median <= BUDGET_MS else 'NO'}")
        results["shapes"][shape] = {"layers": layers, "heads": heads, "grid": list(grid), "hidden": hidden,
                                    "query_rows": len(trace.query_positions), "views": rows}
        slowest = max(rows, key=lambda name: rows[name]["median_ms"])
        checks.append({"figure": f"slowest view, {shape} ({slowest})", "target": f"≤ {BUDGET_MS:.0f} ms",
                       "measured": f"{rows[slowest]['median_ms']:.0f} ms", "pass": rows[slowest]["ok"]})
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({**results, "checks": checks}, indent=2) + "\n")
    print(f"wrote {OUT}")
    return {"checks": checks}


if __name__ == "__main__":
    main()
