"""Memory stays bounded over 200 sequential mixed requests (analyze, explain, quick experiment), as the app's
handlers serve them: each result replaces its session's previous one in the app's store, and nothing else
accumulates.

Run: `python -m bench.bench_soak`. In-process app handlers, default model; per 10 requests: 6 analyses (4 new
tokens, every view rendered), 3 explanations (the method × run grid rendered) and 1 quick experiment (4 samples,
table and plots); RSS sampled every 20 requests after a 20-request warm-up, each time after handing freed heap back
to the OS as the server does every 10 s. Target (issue "Reliability v3"): RSS at the end ≤ +10 % of RSS after the
warm-up.
"""

from __future__ import annotations

import asyncio
import gc
from types import SimpleNamespace

import psutil
from PIL import Image

from bench.common import peak_rss_mib, write
from var_core.server import release_free_memory

REQUESTS, WARMUP, EVERY = 200, 20, 20
MIX = ["analyze"] * 6 + ["explain"] * 3 + ["experiment"]
QUIET = {"progress": lambda *a, **k: None}


def serve(kind: str, index: int, image) -> None:
    """One request of `kind` and the views the page then renders, as one browser session asking again and again
    (experiments: one session each, as the app admits a few per session an hour)."""
    from ui import analyze as ui_analyze, experiments as ui_experiments, explanations as ui_explanations

    session = SimpleNamespace(session_hash="soak")
    prompt = f"What colour is the square? ({index})"
    if kind == "analyze":
        _, held = asyncio.run(ui_analyze.analyze_request(image, prompt, request=session, max_new_tokens=4, **QUIET))
        ui_analyze.render_all(held, 5, ui_analyze.MEAN_HEADS, "answer", "VAR", False)
    elif kind == "explain":
        _, held = asyncio.run(ui_explanations.explain_request(image, prompt, request=session, **QUIET))
        ui_explanations.render_explanation(held, prompt)
    else:
        ui_experiments.run_experiment("contribution", 4, request=SimpleNamespace(session_hash=f"soak-experiment-{index}"),
                                      **QUIET)


def main() -> dict:
    from ui import settings as ui_settings

    process = psutil.Process()
    image = Image.open(ui_settings.EXAMPLES_DIR / "demo_three_shapes.png")
    samples, served = [], {kind: 0 for kind in MIX}
    for index in range(WARMUP + REQUESTS):
        kind = MIX[index % len(MIX)]
        serve(kind, index, image)
        served[kind] += index >= WARMUP
        if index >= WARMUP - 1 and (index - WARMUP + 1) % EVERY == 0:
            gc.collect()
            release_free_memory()  # what the server's trim thread does every 10 s (app.TRIM_EVERY_S)
            samples.append(process.memory_info().rss / 2**20)
    growth = samples[-1] / samples[0] - 1
    mix = ", ".join(f"{count} {kind}" for kind, count in served.items())
    checks = [{"figure": f"RSS growth over {REQUESTS} sequential mixed requests ({mix})", "target": "≤ 10 %",
               "measured": f"{100 * growth:+.1f} % ({samples[0]:.0f} → {samples[-1]:.0f} MiB)", "pass": growth <= 0.10}]
    write("soak", {"requests": REQUESTS, "served": served, "rss_mib": samples, "peak_rss_mib": peak_rss_mib(),
                   "checks": checks})
    print(checks[0])
    return {"checks": checks}


if __name__ == "__main__":
    main()
