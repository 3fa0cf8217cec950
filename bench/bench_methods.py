"""Every registered method where it acts: time per generated token vs the hook with no method, on the default model.

Run: `python -m bench.bench_methods`. Every method of `var_core.interventions.registry.METHODS` (new entries are
picked up) runs at its registry defaults through `run_method`, decoding exactly NEW_TOKENS tokens (min_new_tokens)
of the app's first example without capture, in REPS rounds; a ratio is the median over rounds of the method's time
over the baseline's run next to it (order alternating), which cancels the machine's drift. Transformers' own sdpa
(no hook at all) is timed too, for scale.

Each method is also run once with capture, and compared with the baseline's captured run: the (layer, head, query)
rows whose attention to the image differs, and the decoding steps whose top-5 next-token probabilities differ. A
method with neither (> 0) fails its check, so a method that silently does nothing cannot pass as a measurement.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch
from PIL import Image

from bench.common import EXAMPLE, bench_device, plain_generate, write
from var_core.interventions.registry import METHODS, run_method
from var_core.models import load_default_model

NEW_TOKENS, REPS = 16, 5
PROMPT = "What colour is the square?"
REFERENCE = "baseline"
TIME_TARGET = 2.5  # × the baseline per token: the explicit-attention methods ≈ 1×, a second decoding branch ≈ 2×


def activity(bundle, image, name: str, reference) -> dict:
    """Attention rows and decoding steps the method changed vs the baseline's captured run (same prompt, same
    length: a row or step after the answers diverge counts as changed)."""
    trace = run_method(bundle, image, PROMPT, name, max_new_tokens=NEW_TOKENS)
    mine, base = trace.attn_to_visual.astype(np.float32), reference.attn_to_visual.astype(np.float32)
    q = min(mine.shape[2], base.shape[2])
    rows = int((np.abs(mine[:, :, :q] - base[:, :, :q]) > 1e-4).any(-1).sum())
    steps = min(len(trace.top_probs), len(reference.top_probs))
    changed_steps = int(((np.abs(trace.top_probs[:steps] - reference.top_probs[:steps]) > 1e-6)
                         | (trace.top_token_ids[:steps] != reference.top_token_ids[:steps])).any(-1).sum())
    return {"changed_rows": rows, "rows": int(np.prod(mine[:, :, :q].shape[:3])), "changed_steps": changed_steps,
            "steps": steps, "answer": trace.answer, "settings": trace.settings.get("method")}


def main() -> dict:
    torch.manual_seed(0)
    device, _, _ = bench_device()
    bundle = load_default_model(device=device)
    bundle.model.generation_config.min_new_tokens = NEW_TOKENS  # every method decodes the same length
    image = Image.open(EXAMPLE)
    reference = run_method(bundle, image, PROMPT, REFERENCE, max_new_tokens=NEW_TOKENS)
    acts = {name: activity(bundle, image, name, reference) for name in METHODS if name != REFERENCE}

    inputs = {k: v.to(bundle.device) for k, v in bundle.adapter.prepare(bundle, image, PROMPT).inputs.items()}
    cases = {"transformers sdpa (no hook)": lambda: plain_generate(bundle, inputs, NEW_TOKENS, "sdpa")}
    cases.update({name: (lambda name=name: run_method(bundle, image, PROMPT, name, capture=False,
                                                      max_new_tokens=NEW_TOKENS)) for name in METHODS})
    for run in cases.values():  # warm-up
        run()
    times = {name: [] for name in cases}
    ratios = {name: [] for name in cases if name != REFERENCE}

    def timed(name: str) -> float:
        start = time.perf_counter()
        cases[name]()
        times[name].append(time.perf_counter() - start)
        return times[name][-1]

    for round_ in range(REPS):
        for name in ratios:
            first, second = (name, REFERENCE) if round_ % 2 else (REFERENCE, name)
            seconds = {first: timed(first), second: timed(second)}
            ratios[name].append(seconds[name] / seconds[REFERENCE])
    per_token_ms = {name: statistics.median(values) / NEW_TOKENS * 1000 for name, values in times.items()}
    checks = []
    for name, seen in acts.items():
        checks.append({"figure": f"{METHODS[name].title}: attention rows / decoding steps it changed vs the baseline "
                                 f"({seen['rows']} rows, {seen['steps']} steps)", "target": "> 0 (the method acts)",
                       "measured": f"{seen['changed_rows']} rows, {seen['changed_steps']} steps",
                       "pass": seen["changed_rows"] > 0 or seen["changed_steps"] > 0})
    for name in METHODS:
        if name == REFERENCE:
            continue
        value = statistics.median(ratios[name])
        checks.append({"figure": f"{METHODS[name].title} / baseline (hook, no method), time per token "
                                 f"({NEW_TOKENS} tokens, default model)", "target": f"≤ {TIME_TARGET}×",
                       "measured": f"{value:.3f}× ({per_token_ms[name]:.1f} ms/token; rounds "
                                   f"{min(ratios[name]):.3f}–{max(ratios[name]):.3f})", "pass": value <= TIME_TARGET})
    write("methods", {"new_tokens": NEW_TOKENS, "reps": REPS, "prompt": PROMPT, "times_s": times,
                      "per_token_ms": per_token_ms, "ratios_vs_baseline": ratios, "activity": acts, "checks": checks})
    for name, value in per_token_ms.items():
        ratio = f"{statistics.median(ratios[name]):.3f}×" if name in ratios else "1 (reference)"
        print(f"{name:32s} {value:7.1f} ms/token  ({ratio} baseline)")
    for name, seen in acts.items():
        print(f"{name}: changed {seen['changed_rows']} of {seen['rows']} attention rows, {seen['changed_steps']} of "
              f"{seen['steps']} steps' top-5; answer {seen['answer']!r}")
    return {"checks": checks}


if __name__ == "__main__":
    main()
