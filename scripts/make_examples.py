"""Write the app's example inputs: held-out generated scenes plus hand-drawn-looking sketches, with prompts.

    python -m scripts.make_examples      # → assets/examples/*.png + examples.json
"""

from __future__ import annotations

import json
import math
import random

from PIL import Image, ImageDraw, ImageFilter

from var_core.models.default import ASSETS
from var_core.scenes import COLOURS, HELDOUT_SEED_BASE, Scene, Shape, make_scene, make_shifted_scene, questions, render

OUT = ASSETS / "examples"
FAMILIES = {"scene": make_scene, "shifted": make_shifted_scene}
# The app's first example, written out by hand so it never moves with the generator: three shapes, a colour
# question about one of them. At the defaults the model has visual sinks on its background, VAR selects
# image-centric heads and the answer is right (tests/test_default_model.py checks all three).
DEMO_FILE, DEMO_PROMPT, DEMO_ANSWER = "demo_three_shapes.png", "What colour is the square?", "blue"
DEMO_SCENE = Scene(seed=7, background="plain", shapes=(Shape("circle", "red", 36, 38, 17),
                                                      Shape("square", "blue", 92, 40, 17),
                                                      Shape("triangle", "yellow", 60, 94, 18)))
SCENE_EXAMPLES = [("scene", 8, "count"), ("scene", 14, "yesno"), ("scene", 5, "position"),
                  ("shifted", 2, "colour"), ("scene", 13, "shape")]
# (family, held-out scene offset, question kind): both scene families, 1–4 shapes, every trained question kind.
SKETCHES = [  # (file, shapes as (kind, colour, x, y, radius) on a 256 px page, prompt, answer)
    ("sketch_sun_and_house.png", [("circle", "yellow", 190, 60, 34), ("square", "blue", 90, 170, 46),
                                  ("triangle", "red", 90, 95, 50)], "What colour is the circle?", "yellow"),
    ("sketch_stars.png", [("star", "orange", 70, 80, 40), ("star", "purple", 180, 170, 44)],
     "How many shapes are there?", "2"),
    ("sketch_green_triangle.png", [("triangle", "green", 128, 140, 70)], "Is there a green triangle in the image?", "yes"),
]


def wobbly_outline(kind: str, x: float, y: float, r: float, rng: random.Random) -> list[tuple[float, float]]:
    """Closed outline with hand-drawn jitter: circle, square, triangle or star."""
    if kind == "circle":
        corners = [(x + r * math.cos(t), y + r * math.sin(t)) for t in (2 * math.pi * k / 40 for k in range(40))]
    else:
        spec = {"square": [(1, 45 + 90 * k) for k in range(4)], "triangle": [(1, -90 + 120 * k) for k in range(3)],
                "star": [(1 if k % 2 == 0 else 0.45, -90 + 36 * k) for k in range(10)]}[kind]
        corners = [(x + r * f * math.cos(math.radians(a)), y + r * f * math.sin(math.radians(a))) for f, a in spec]
    points = []
    for (ax, ay), (bx, by) in zip(corners, corners[1:] + corners[:1]):
        for t in (k / 6 for k in range(6)):
            points.append((ax + (bx - ax) * t + rng.gauss(0, 1.5), ay + (by - ay) * t + rng.gauss(0, 1.5)))
    return points


def sketch(shapes, seed: int) -> Image.Image:
    """Crayon-style drawing on off-white paper: hatched fill inside a wobbly double outline."""
    rng = random.Random(seed)
    page = Image.effect_noise((256, 256), 8).convert("RGB").point(lambda v: 236 + (v - 128) // 16)
    draw = ImageDraw.Draw(page)
    for kind, colour, x, y, r in shapes:
        ink = COLOURS[colour]
        outline = wobbly_outline(kind, x, y, r, rng)
        mask = Image.new("L", page.size)
        ImageDraw.Draw(mask).polygon(outline, fill=255)
        hatch = Image.new("L", page.size)
        hatch_draw = ImageDraw.Draw(hatch)
        for offset in range(-256, 512, 5):
            hatch_draw.line([(offset, 0), (offset + 256 + rng.uniform(-8, 8), 256)], fill=200, width=3)
        page.paste(Image.new("RGB", page.size, ink), mask=Image.composite(hatch, mask.point(lambda v: 0), mask))
        for _ in range(2):
            draw.line([(px + rng.gauss(0, 1), py + rng.gauss(0, 1)) for px, py in outline + outline[:1]], fill=ink, width=3)
    return page.filter(ImageFilter.SMOOTH)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    render(DEMO_SCENE).save(OUT / DEMO_FILE)
    entries = [{"file": DEMO_FILE, "prompt": DEMO_PROMPT, "answer": DEMO_ANSWER,
                "source": "DEMO_SCENE in scripts/make_examples.py"}]
    for family, offset, kind in SCENE_EXAMPLES:
        name, scene = f"{family}_{offset:02d}.png", FAMILIES[family](HELDOUT_SEED_BASE + offset)
        (qa,) = [qa for qa in questions(scene) if qa.kind == kind]
        render(scene).save(OUT / name)
        entries.append({"file": name, "prompt": qa.question, "answer": qa.answer,
                        "source": f"var_core.scenes.{FAMILIES[family].__name__}({scene.seed})"})
    for index, (name, shapes, prompt, answer) in enumerate(SKETCHES):
        sketch(shapes, index).save(OUT / name)
        entries.append({"file": name, "prompt": prompt, "answer": answer, "source": "hand-drawn style sketch (scripts/make_examples.py)"})
    (OUT / "examples.json").write_text(json.dumps(entries, indent=1) + "\n")
    print(f"wrote {len(entries)} examples to {OUT}")


if __name__ == "__main__":
    main()
