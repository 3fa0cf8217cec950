"""VAR where it acts: the cost of the hook, of VAR and of capture on the default model, 32 greedy tokens.

Run: `python -m bench.bench_generation`. Every mode decodes exactly NEW_TOKENS tokens (min_new_tokens) of the app's
first example, in REPS rounds; a ratio is the median over rounds of a mode's time over the time of
the reference run next to it (order alternating), which cancels the machine's drift. Targets (issue "Performance v2"):
VAR at the app's defaults and VAR on every head (`select_heads=False`) ≤ 1.05× the hook with VAR off; capture ≤
1.25× no capture. Each VAR mode is also run once with capture, to count the rows it selected and the rows it changed
per decoding step: a VAR mode that changes nothing fails its check, so a no-op can never pass as a measurement.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch
from PIL import Image

from bench.common import EXAMPLE, bench_device, changed_rows, plain_generate, write
from var_core.config import VARConfig
from var_core.models import load_default_model
from var_core.run import generate

NEW_TOKENS, REPS = 32, 7
PROMPT = "What colour is the square?"
VAR_MODES = {"VAR at the defaults": VARConfig(), "VAR on every head (select_heads=False)": VARConfig(select_heads=False)}
REFERENCE = "hook, VAR off"
TARGETS = {  # (mode, reference) → target ratio
    ("VAR at the defaults", REFERENCE): 1.05,
    ("VAR on every head (select_heads=False)", REFERENCE): 1.05,
    ("hook, VAR off, capture", REFERENCE): 1.25,
    ("VAR at the defaults, capture", "VAR at the defaults"): 1.25,
}


def cases(bundle, image) -> dict:
    """name → callable generating NEW_TOKENS tokens in that mode."""
    inputs = {k: v.to(bundle.device) for k, v in bundle.adapter.prepare(bundle, image, PROMPT).inputs.items()}

    def plain(implementation):
        return lambda: plain_generate(bundle, inputs, NEW_TOKENS, implementation)

    def hooked(config, capture):
        return lambda: generate(bundle, image, PROMPT, config=config, capture=capture, max_new_tokens=NEW_TOKENS)

    return {
        "transformers sdpa (no hook)": plain("sdpa"),
        "transformers eager (no hook)": plain("eager"),
        REFERENCE: hooked(None, False),
        **{name: hooked(config, False) for name, config in VAR_MODES.items()},
        "hook, VAR off, capture": hooked(None, True),
        "VAR at the defaults, capture": hooked(VAR_MODES["VAR at the defaults"], True),
    }


def paired_ratios(cases: dict, reps: int) -> tuple[dict, dict]:
    """Per round: each case once, then each target's mode and reference back to back (order alternating between
    rounds), so a ratio compares adjacent runs and the machine's drift (±4 % between identical runs here) cancels.
    Returns per-case times and per-round ratio lists."""
    for run in cases.values():  # warm-up
        run()
    times = {name: [] for name in cases}
    ratios = {pair: [] for pair in TARGETS}

    def timed(name: str) -> float:
        start = time.perf_counter()
        cases[name]()
        times[name].append(time.perf_counter() - start)
        return times[name][-1]

    for round_ in range(reps):
        for name in cases:
            if not any(name in pair for pair in TARGETS):
                timed(name)
        for mode, reference in TARGETS:
            first, second = (mode, reference) if round_ % 2 else (reference, mode)
            seconds = {first: timed(first), second: timed(second)}
            ratios[mode, reference].append(seconds[mode] / seconds[reference])
    return times, ratios


def var_activity(bundle, image, config: VARConfig) -> dict:
    """Rows VAR selected and rows it changed, per decoding step (from one run with capture)."""
    trace = generate(bundle, image, PROMPT, config=config, max_new_tokens=NEW_TOKENS)
    layers = trace.settings["var_layers"]
    steps = len(trace.query_positions)  # query rows: the prompt text after the image, then each decoded token
    return {"selected_rows_per_step": float(trace.selected[layers].sum() / steps),
            "changed_rows_per_step": changed_rows(trace) / steps, "rows_per_step": len(layers) * trace.num_heads,
            "layers_with_visual_sinks": [int(i) for i in np.nonzero(trace.visual_sinks.any(-1))[0]]}


def main() -> dict:
    torch.manual_seed(0)
    device, _, _ = bench_device()
    bundle = load_default_model(device=device)
    bundle.model.generation_config.min_new_tokens = NEW_TOKENS  # every mode decodes the same length
    image = Image.open(EXAMPLE)
    activity = {name: var_activity(bundle, image, config) for name, config in VAR_MODES.items()}
    times, ratios = paired_ratios(cases(bundle, image), REPS)
    checks = []
    for name, seen in activity.items():
        checks.append({"figure": f"{name}: rows VAR changed per step (of {seen['rows_per_step']} in its layers)",
                       "target": "> 0 (VAR acts)", "measured": f"{seen['changed_rows_per_step']:.1f} "
                       f"(selected {seen['selected_rows_per_step']:.1f})", "pass": seen["changed_rows_per_step"] > 0})
    for (mode, reference), target in TARGETS.items():
        value = statistics.median(ratios[mode, reference])
        checks.append({"figure": f"{mode} / {reference} ({NEW_TOKENS} tokens, default model)", "target": f"≤ {target}×",
                       "measured": f"{value:.3f}× (rounds {min(ratios[mode, reference]):.3f}–"
                                   f"{max(ratios[mode, reference]):.3f})", "pass": value <= target})
    medians = {name: statistics.median(values) for name, values in times.items()}
    write("generation", {"new_tokens": NEW_TOKENS, "reps": REPS, "prompt": PROMPT, "times_s": times,
                         "median_s": medians, "activity": activity,
                         "ratios": {f"{mode} / {ref}": values for (mode, ref), values in ratios.items()},
                         "checks": checks})
    for name, value in medians.items():
        print(f"{name:42s} {value * 1000:8.0f} ms  ({value / medians[REFERENCE]:.3f}× hook, VAR off)")
    for name, seen in activity.items():
        print(f"{name}: selected {seen['selected_rows_per_step']:.1f}, changed {seen['changed_rows_per_step']:.1f} "
              f"of {seen['rows_per_step']} rows per step; visual sinks in layers {seen['layers_with_visual_sinks']}")
    return {"checks": checks}


if __name__ == "__main__":
    main()
