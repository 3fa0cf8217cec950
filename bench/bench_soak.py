"""Memory stays bounded over 100 sequential requests of one session (each replaces that session's result in the
app's store; nothing accumulates globally), and the store stays under its cap.

Run: `python -m bench.bench_soak`. In-process app handler, default model, 4 new tokens per run; RSS sampled
every 10 requests after a 10-request warm-up. Target: growth after warm-up ≤ 10 %.
"""

from __future__ import annotations

import asyncio
import gc
from types import SimpleNamespace

import psutil
from PIL import Image

from bench.common import peak_rss_mib, write

REQUESTS, WARMUP, EVERY = 100, 10, 10


def main() -> dict:
    import app

    process = psutil.Process()
    image = Image.open(app.EXAMPLES_DIR / "demo_three_shapes.png")
    samples = []
    session = SimpleNamespace(session_hash="soak")  # one browser session asking again and again
    for index in range(WARMUP + REQUESTS):
        _, result = asyncio.run(app.analyze_request(image, f"What colour is the square? ({index})", request=session,
                                                    max_new_tokens=4, progress=lambda *a, **k: None))
        app.render_all(result, 5, app.MEAN_HEADS, "answer", "VAR", False)
        del result
        if index >= WARMUP and (index - WARMUP) % EVERY == 0:
            gc.collect()
            samples.append(process.memory_info().rss / 2**20)
    growth = samples[-1] / samples[0] - 1
    checks = [{"figure": f"RSS growth over {REQUESTS} sequential requests", "target": "≤ 10 %",
               "measured": f"{100 * growth:+.1f} % ({samples[0]:.0f} → {samples[-1]:.0f} MiB)", "pass": growth <= 0.10}]
    write("soak", {"requests": REQUESTS, "rss_mib": samples,
                   "peak_rss_mib": peak_rss_mib(), "checks": checks})
    print(checks[0])
    return {"checks": checks}


if __name__ == "__main__":
    main()
