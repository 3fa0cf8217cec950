"""Quick in-process versions of the experiments (≤ ~2 min on 2 CPU cores with the default model), for the app.

    rows, figures = run_quick("pope", n_samples=None, progress_callback=None, bundle=None)

rows: list of dicts (one per table row; same columns as the CLI's table.csv); figures: list of matplotlib
Figures (pyplot-free). progress_callback(done: int, total: int, message: str) is called after every run.
Nothing is written to disk; results are not cached between calls.

    rows, png_paths, meta = load_full_results("pope")   # the committed full run in results/pope/, or None
"""

from __future__ import annotations

import json
from pathlib import Path

from var_core.eval.experiments import EXPERIMENTS, make_samples
from var_core.eval.runner import run_experiment
from var_core.shipped import shipped

# name → (default number of samples — images for `sinks` — and option overrides); sized for ~1 min each.
QUICK = {
    "pope": (40, {}),
    "ablate": (20, {}),
    "sweep": (12, {"ps": [0.4, 0.8], "rhos": [0.3, 0.5]}),
    "mask": (16, {"seeds": [0, 1, 2], "mask_rule": "topk", "k": 4}),
    "contribution": (16, {}),
    "sinks": (8, {}),
}
NAMES = tuple(QUICK)


def run_quick(name: str, n_samples: int | None = None, progress_callback=None, bundle=None, options=None):
    """Run the quick version of experiment `name` on the synthetic scenes → (table rows, list of Figures).

    bundle: a loaded ModelBundle (default: the embedded default model, loaded here). options: overrides of the
    quick defaults (e.g. {"p": 0.6}). Raises ValueError for an unknown name.
    """
    if name not in QUICK:
        raise ValueError(f"unknown experiment {name!r}; quick versions exist for {', '.join(NAMES)}")
    default_n, quick_options = QUICK[name]
    if bundle is None:
        from var_core.models.default import load_default_model
        bundle = load_default_model()
    samples = make_samples(name, n_samples or default_n)
    result = run_experiment(EXPERIMENTS[name], bundle, samples, {**quick_options, **(options or {})},
                            progress=progress_callback, show_bar=False)
    return result.rows, list(result.figures.values())


RESULTS_ROOT = shipped("results")


def load_full_results(name: str, root=None):
    """The committed full run of `name` (results/<name>/), or None: (rows, [PNG paths], meta dict)."""
    folder = Path(root or RESULTS_ROOT) / name
    summary = folder / "summary.json"
    if not summary.is_file():
        return None
    data = json.loads(summary.read_text())
    return data["rows"], sorted(str(p) for p in folder.glob("*.png")), data["meta"]
