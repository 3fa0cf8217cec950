"""Cost of the hook, of VAR and of capture during generation of the same 32 tokens on the default model.

Run: `python -m bench.bench_generation`. Every mode decodes exactly NEW_TOKENS tokens (min_new_tokens), modes
interleaved, median of REPS. Targets (issue 9): VAR on / hook with VAR off ≤ 1.05×; capture on / off ≤ 1.25×.
"""

from __future__ import annotations

import torch

from bench.common import interleaved_medians, write
from var_core.config import VARConfig
from var_core.models import load_default_model
from var_core.run import generate
from var_core.scenes import make_scene, render

NEW_TOKENS, REPS = 32, 5
PROMPT = "Describe the image."


def cases(bundle, image) -> dict:
    """name → callable generating NEW_TOKENS tokens in that mode."""
    inputs = bundle.adapter.prepare(bundle, image, PROMPT).inputs

    def plain(implementation):
        def run():
            bundle.model.set_attn_implementation(implementation)
            with torch.no_grad():
                bundle.model.generate(**inputs, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False)
        return run

    def hooked(config, capture):
        return lambda: generate(bundle, image, PROMPT, config=config, capture=capture, max_new_tokens=NEW_TOKENS)

    return {
        "transformers sdpa (no hook)": plain("sdpa"),
        "transformers eager (no hook)": plain("eager"),
        "hook, VAR off, no capture": hooked(None, False),
        "hook, VAR on, no capture": hooked(VARConfig(), False),
        "hook, VAR off, capture": hooked(None, True),
        "hook, VAR on, capture": hooked(VARConfig(), True),
    }


def main() -> dict:
    torch.manual_seed(0)
    bundle = load_default_model()
    bundle.model.generation_config.min_new_tokens = NEW_TOKENS  # every mode decodes the same length
    image = render(make_scene(7))
    timings = interleaved_medians(cases(bundle, image), reps=REPS)
    median = {name: t["median_s"] for name, t in timings.items()}
    ratios = {
        "VAR on / hook VAR off (no capture)": median["hook, VAR on, no capture"] / median["hook, VAR off, no capture"],
        "capture / no capture (VAR off)": median["hook, VAR off, capture"] / median["hook, VAR off, no capture"],
        "capture / no capture (VAR on)": median["hook, VAR on, capture"] / median["hook, VAR on, no capture"],
        "hook VAR off / transformers eager": median["hook, VAR off, no capture"] / median["transformers eager (no hook)"],
        "transformers eager / sdpa": median["transformers eager (no hook)"] / median["transformers sdpa (no hook)"],
    }
    targets = {"VAR on / hook VAR off (no capture)": 1.05, "capture / no capture (VAR off)": 1.25,
               "capture / no capture (VAR on)": 1.25}
    checks = [{"figure": name, "target": f"≤ {targets[name]}×", "measured": f"{value:.3f}×",
               "pass": value <= targets[name]} for name, value in ratios.items() if name in targets]
    write("generation", {"new_tokens": NEW_TOKENS, "reps": REPS, "timings": timings, "ratios": ratios,
                         "checks": checks})
    for name, value in median.items():
        print(f"{name:34s} {value * 1000:8.0f} ms")
    for name, value in ratios.items():
        print(f"{name:40s} {value:.3f}×")
    return {"checks": checks}


if __name__ == "__main__":
    main()
