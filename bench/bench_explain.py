"""The explanation maps ("Where did it look?") on the default model: what one button press costs.

Run: `python -m bench.bench_explain`. Target (issue "Views v2"): all three maps (relevancy, relative attention,
activation map; raw attention comes with them), baseline and VAR, ≤ 10 s on the default model on CPU. The VAR
runs must really redistribute: the check counts the layers where VAR changed the answer row's attention.
"""

from __future__ import annotations

import statistics
import time

from PIL import Image

from bench.common import EXAMPLE, bench_device, write
from var_core.config import VARConfig
from var_core.explain import activation_map, explain, relative_attention, relevancy
from var_core.explain.forward import answer_forward
from var_core.models import load_default_model

PROMPT = "What colour is the square?"


def seconds(function, *args, **kwargs) -> float:
    start = time.perf_counter()
    function(*args, **kwargs)
    return time.perf_counter() - start


def main() -> dict:
    bundle = load_default_model(device=bench_device()[0])
    image, config = Image.open(EXAMPLE), VARConfig()
    explain(bundle, image, PROMPT)  # warm-up
    both = [seconds(explain, bundle, image, PROMPT) + seconds(explain, bundle, image, PROMPT, config)
            for _ in range(5)]
    single = {function.__name__: statistics.median(seconds(function, bundle, image, PROMPT, config) for _ in range(3))
              for function in (relevancy, relative_attention, activation_map)}
    baseline, with_var = (answer_forward(bundle, image, PROMPT, run) for run in (None, config))
    changed_layers = int((baseline.attention - with_var.attention).abs().amax(-1).gt(0).sum())
    median = statistics.median(both)
    checks = [
        {"figure": "explanation: all maps, baseline + VAR (default model)", "target": "≤ 10 s",
         "measured": f"{median:.2f} s", "pass": median <= 10},
        {"figure": "explanation: layers where VAR changed the answer row", "target": "> 0 (VAR acts)",
         "measured": f"{changed_layers} of {bundle.num_layers}", "pass": changed_layers > 0},
    ]
    payload = {"both_runs_s": both, "single_method_with_var_s": single, "changed_layers": changed_layers,
               "checks": checks}
    write("explain", payload)
    for check in checks:
        print(f"{check['figure']}: {check['measured']} (target {check['target']})")
    print("single methods with VAR:", {name: f"{value:.2f} s" for name, value in single.items()})
    return payload


if __name__ == "__main__":
    main()
