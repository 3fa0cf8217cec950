"""Render the README's "Where did it look?" picture from the default model: the four maps of the first answer
token, baseline and VAR, for one bundled example (a measurement, not a drawing).

Run: `python -m scripts.explain_example` (from the repository root) → docs/where_did_it_look.png.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from scripts.make_examples import DEMO_PROMPT
from var_core.config import VARConfig
from var_core.explain import explain
from var_core.models import load_default_model
from viz.explain import compare_methods

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "assets" / "examples" / "demo_three_shapes.png"
OUT = ROOT / "docs" / "where_did_it_look.png"


def main() -> None:
    bundle = load_default_model()
    image = Image.open(EXAMPLE)
    runs = {"baseline": explain(bundle, image, DEMO_PROMPT), "VAR": explain(bundle, image, DEMO_PROMPT, VARConfig())}
    tokens = ", ".join(f"{run} {explanation.answer_token.strip()!r}" for run, explanation in runs.items())
    picture = compare_methods(runs["baseline"].image, {run: e.maps for run, e in runs.items()},
                              f"{bundle.name}: “{DEMO_PROMPT}” — first answer token ({tokens})",
                              sinks={run: e.sink_patches for run, e in runs.items()})
    picture.save(OUT, optimize=True)
    for run, explanation in runs.items():
        print(run, {method: round(share, 3) for method, share in explanation.mass_on_sinks().items()})
    print(OUT, picture.size)


if __name__ == "__main__":
    main()
