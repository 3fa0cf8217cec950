"""Synthetic shape scenes with question/answer pairs: training data and held-out tests for the default model.

Three families: `make_scene` (the training generator; its held-out seeds start at HELDOUT_SEED_BASE; v3 of the
default model trains on `make_training_scene`, half `make_scene`, half the harder `make_varied_scene`),
`make_shifted_scene` (evaluation only, drawn differently: shapes up to 40 % of the side, two-tone / dotted /
photo-like backgrounds, non-square canvases) and `make_large_scene` (evaluation only, a third hand: 2–5 large
shapes, 25–45 % of the side, filled or outlined, some touching). Every scene is a pure function of its seed; every answer is computed
from the scene's metadata (`Scene.shapes`), so each question is answerable from the metadata alone.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw

SIZE = 128  # the default model's input resolution, so the processor does not resample scenes
COLOURS = {
    "red": (215, 35, 35), "orange": (245, 135, 15), "yellow": (240, 215, 20),
    "green": (35, 160, 55), "blue": (35, 75, 215), "purple": (135, 50, 185), "black": (20, 20, 20),
}
SHAPES = ("circle", "square", "triangle", "star")
BACKGROUNDS = {"plain": "plain", "gradient": "gradient", "noise": "noisy", "texture": "textured"}
SHIFTED_BACKGROUNDS = {"two-tone": "two-tone", "dots": "dotted", "photo": "photo-like"}  # only in the shifted family
LARGE_BACKGROUNDS = ("two-tone", "texture", "dots")  # the large family's: two-tone and textured
QUESTION_KINDS = ("colour", "shape", "count", "yesno", "position", "caption")
COLOUR_WORDS = ("colour", "color")  # both spellings are asked, at random
HELDOUT_SEED_BASE = 1_000_000_000  # training uses seeds below this, evaluation seeds from here on
POSITION_MIN_OFFSET, POSITION_MIN_MARGIN = 18, 12  # pixels: only ask "where" when the answer is unambiguous


@dataclass(frozen=True)
class Shape:
    """One object: kind, colour name, centre (x right, y down, pixels), radius of its bounding circle, and whether
    only its outline is drawn."""

    kind: str
    colour: str
    x: float
    y: float
    radius: float
    outline: bool = False

    @property
    def name(self) -> str:
        return f"{self.colour} {self.kind}"


@dataclass(frozen=True)
class Scene:
    """A scene's metadata; `render` turns it into the image."""

    seed: int
    background: str
    shapes: tuple[Shape, ...]
    width: int = SIZE
    height: int = SIZE


@dataclass(frozen=True)
class QA:
    """A question about a scene with its one-word (or one-sentence, for captions) answer."""

    kind: str
    question: str
    answer: str


def make_scene(seed: int) -> Scene:
    """1–4 non-overlapping shapes with distinct (colour, kind) pairs on a random background."""
    rng = random.Random(seed)
    count = rng.randint(1, 4)
    max_radius = 22 if count <= 2 else 18
    shapes: list[Shape] = []
    while len(shapes) < count:
        kind, colour = rng.choice(SHAPES), rng.choice(list(COLOURS))
        radius = rng.uniform(10, max_radius)
        x, y = rng.uniform(radius + 2, SIZE - radius - 2), rng.uniform(radius + 2, SIZE - radius - 2)
        clash = any(s.kind == kind and s.colour == colour for s in shapes)
        overlap = any(math.hypot(s.x - x, s.y - y) < s.radius + radius + 4 for s in shapes)
        if not clash and not overlap:
            shapes.append(Shape(kind, colour, round(x, 1), round(y, 1), round(radius, 1)))
    return Scene(seed, rng.choice(list(BACKGROUNDS)), tuple(shapes))


def make_training_scene(seed: int) -> Scene:
    """The default model v3's training generator: even seeds draw `make_scene`, odd seeds `make_varied_scene`."""
    return make_scene(seed) if seed % 2 == 0 else make_varied_scene(seed)


def make_varied_scene(seed: int) -> Scene:
    """The harder half of v3's training data: 1–5 shapes, diameters up to half the side (with few shapes), a third of
    them outlines, a third placed next to another (a gap of 1–4 px), on the training backgrounds; square, 128 px."""
    rng = random.Random(seed ^ 0x7A3C1)
    count = rng.randint(1, 5)
    max_radius = {1: 32, 2: 28, 3: 24}.get(count, 19)
    shapes: list[Shape] = []
    for _ in range(2000):
        if len(shapes) == count:
            break
        kind, colour, radius = rng.choice(SHAPES), rng.choice(list(COLOURS)), rng.uniform(9, max_radius)
        if shapes and rng.random() < 0.35:
            other, angle = rng.choice(shapes), rng.uniform(0, 2 * math.pi)
            x = other.x + (other.radius + radius + rng.uniform(1, 4)) * math.cos(angle)
            y = other.y + (other.radius + radius + rng.uniform(1, 4)) * math.sin(angle)
        else:
            x, y = rng.uniform(radius + 2, SIZE - radius - 2), rng.uniform(radius + 2, SIZE - radius - 2)
        inside = radius + 1 <= x <= SIZE - radius - 1 and radius + 1 <= y <= SIZE - radius - 1
        clash = any(s.kind == kind and s.colour == colour for s in shapes)
        overlap = any(math.hypot(s.x - x, s.y - y) < s.radius + radius + 1 for s in shapes)
        if inside and not clash and not overlap:
            shapes.append(Shape(kind, colour, round(x, 1), round(y, 1), round(radius, 1), rng.random() < 0.33))
    return Scene(seed, rng.choice(list(BACKGROUNDS)), tuple(shapes))


def make_shifted_scene(seed: int) -> Scene:
    """Evaluation-only family, drawn differently from `make_scene`: a square or non-square canvas (short side
    128–192 px, aspect up to 1.5), 1–4 shapes of diameter 20–40 % of the short side, all inside the central square
    (the part a CLIP processor keeps after its centre crop), on a background the training generator never draws."""
    rng = random.Random(seed ^ 0x5D1F7)
    side, aspect = rng.choice([128, 160, 192]), rng.choice([1.0, 1.0, rng.uniform(1.2, 1.5)])
    width, height = (round(side * aspect), side) if rng.random() < 0.5 else (side, round(side * aspect))
    x0, y0, count = (width - side) / 2, (height - side) / 2, rng.randint(1, 4)
    shapes: list[Shape] = []
    for _ in range(1000):
        if len(shapes) == count:
            break
        kind, colour = rng.choice(SHAPES), rng.choice(list(COLOURS))
        radius = rng.uniform(0.10, 0.20 if count <= 2 else 0.15) * side
        x, y = x0 + rng.uniform(radius + 2, side - radius - 2), y0 + rng.uniform(radius + 2, side - radius - 2)
        clash = any(s.kind == kind and s.colour == colour for s in shapes)
        overlap = any(math.hypot(s.x - x, s.y - y) < s.radius + radius + 4 for s in shapes)
        if not clash and not overlap:
            shapes.append(Shape(kind, colour, round(x, 1), round(y, 1), round(radius, 1)))
    return Scene(seed, rng.choice(list(SHIFTED_BACKGROUNDS)), tuple(shapes), width, height)


def make_large_scene(seed: int) -> Scene:
    """Evaluation-only family by a third hand: 2–5 large shapes (diameter 25–45 % of the short side with up to 3
    shapes, 25–32 % with 4–5), filled or outlined, about half of them placed touching another (bounding circles
    tangent, never overlapping), inside the central square of a square or non-square canvas (short side 128–192 px,
    aspect up to 1.4), on a two-tone, striped / checked or dotted background."""
    rng = random.Random(seed ^ 0x1A26E)
    side, aspect = rng.choice([128, 160, 192]), rng.choice([1.0, rng.uniform(1.15, 1.4)])
    width, height = (round(side * aspect), side) if rng.random() < 0.5 else (side, round(side * aspect))
    x0, y0 = (width - side) / 2, (height - side) / 2
    for _ in range(100):  # a count whose shapes do not fit is drawn again
        count = rng.randint(2, 5)
        shapes = _large_shapes(rng, count, side, x0, y0)
        if len(shapes) == count:
            return Scene(seed, rng.choice(LARGE_BACKGROUNDS), tuple(shapes), width, height)
    raise RuntimeError(f"no large scene fits for seed {seed}")


def _large_shapes(rng: random.Random, count: int, side: int, x0: float, y0: float) -> list[Shape]:
    """Up to `count` shapes inside the square at (x0, y0) of `side`, distinct (colour, kind), none overlapping."""
    shapes: list[Shape] = []
    low, high = 0.125, 0.225 if count <= 3 else 0.16
    for _ in range(400):
        if len(shapes) == count:
            break
        kind, colour, radius = rng.choice(SHAPES), rng.choice(list(COLOURS)), rng.uniform(low, high) * side
        if shapes and rng.random() < 0.5:  # tangent to a shape already placed
            other, angle = rng.choice(shapes), rng.uniform(0, 2 * math.pi)
            x = other.x + (other.radius + radius + 0.5) * math.cos(angle)
            y = other.y + (other.radius + radius + 0.5) * math.sin(angle)
        else:
            x, y = x0 + rng.uniform(radius + 2, side - radius - 2), y0 + rng.uniform(radius + 2, side - radius - 2)
        inside = x0 + radius + 1 <= x <= x0 + side - radius - 1 and y0 + radius + 1 <= y <= y0 + side - radius - 1
        clash = any(s.kind == kind and s.colour == colour for s in shapes)
        overlap = any(math.hypot(s.x - x, s.y - y) < s.radius + radius for s in shapes)
        if inside and not clash and not overlap:
            shapes.append(Shape(kind, colour, round(x, 1), round(y, 1), round(radius, 1), rng.random() < 0.4))
    return shapes


def _background(kind: str, rng: random.Random, height: int = SIZE, width: int = SIZE) -> np.ndarray:
    """A pale, low-saturation background so every shape colour stays distinct from it."""
    def tone():
        base = rng.uniform(150, 235)
        return np.array([base + rng.uniform(-15, 15) for _ in range(3)])

    a = tone()
    yy, xx = np.mgrid[0:height, 0:width]
    if kind == "plain":
        return np.broadcast_to(a, (height, width, 3)).copy()
    if kind == "gradient":
        b, angle = tone(), rng.uniform(0, 2 * math.pi)
        t = np.clip((math.cos(angle) * (xx / (width - 1) - 0.5) + math.sin(angle) * (yy / (height - 1) - 0.5)) + 0.5,
                    0, 1)[..., None]
        return a * (1 - t) + b * t
    if kind == "noise":
        noise = np.random.default_rng(rng.getrandbits(32)).normal(0, rng.uniform(6, 14), (height, width, 1))
        return a + noise
    if kind == "texture":  # stripes or checks
        period, b = rng.randint(6, 16), a + rng.choice([-1, 1]) * rng.uniform(12, 25)
        mask = (xx // period) % 2 if rng.random() < 0.5 else ((xx // period) + (yy // period)) % 2
        return np.where(mask[..., None] == 1, b, a)
    if kind == "two-tone":  # two pale tones split by a random straight line
        b, angle, offset = tone(), rng.uniform(0, 2 * math.pi), rng.uniform(-0.25, 0.25)
        side = math.cos(angle) * (xx / width - 0.5) + math.sin(angle) * (yy / height - 0.5) > offset
        return np.where(side[..., None], b, a)
    if kind == "dots":  # a regular grid of round dots in a second tone
        b, period = a + rng.choice([-1, 1]) * rng.uniform(15, 30), rng.randint(8, 14)
        dots = np.hypot(xx % period - period / 2, yy % period - period / 2) < period * rng.uniform(0.15, 0.3)
        return np.where(dots[..., None], b, a)
    if kind == "photo":  # smooth colour blotches (upsampled low-resolution noise) plus sensor-like grain
        generator = np.random.default_rng(rng.getrandbits(32))
        blotches = generator.normal(0, 20, (4, 4, 1)) + generator.normal(0, 5, (4, 4, 3))  # mostly light, a little hue
        coarse = (a + blotches).clip(0, 255).astype(np.uint8)
        smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), dtype=np.float64)
        return smooth + generator.normal(0, rng.uniform(4, 10), (height, width, 3))
    raise ValueError(f"unknown background {kind!r}")


def _polygon(shape: Shape, angle: float, scale: float) -> list[tuple[float, float]]:
    """Vertices of a square, triangle or five-pointed star inside the shape's bounding circle."""
    points = {"square": [(1, k * 90 + 45) for k in range(4)], "triangle": [(1, k * 120 - 90) for k in range(3)],
              "star": [((1 if k % 2 == 0 else 0.45), k * 36 - 90) for k in range(10)]}[shape.kind]
    r = shape.radius * scale
    return [(scale * shape.x + r * f * math.cos(math.radians(a + angle)),
             scale * shape.y + r * f * math.sin(math.radians(a + angle))) for f, a in points]


def render(scene: Scene) -> Image.Image:
    """Draw the scene (2× supersampled for smooth edges) as a width × height RGB image."""
    return render_with_owners(scene)[0]


def render_with_owners(scene: Scene) -> tuple[Image.Image, np.ndarray]:
    """The rendered image and, at the 2× supersampled resolution it is drawn at, which shape painted each
    subpixel ([2·height, 2·width] uint8: 0 background, k the k-th shape; a later shape paints over an earlier one).
    Both are drawn by the same calls, so the owners are exactly the painted pixels: training labels patches by it."""
    rng = random.Random(scene.seed ^ 0x5EED)
    pixels = np.clip(_background(scene.background, rng, scene.height, scene.width), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels).resize((2 * scene.width, 2 * scene.height), Image.NEAREST)
    owners = Image.new("L", image.size, 0)
    draws = ImageDraw.Draw(image), ImageDraw.Draw(owners)
    for index, shape in enumerate(scene.shapes, start=1):
        fill = tuple(int(np.clip(c + rng.uniform(-15, 15), 0, 255)) for c in COLOURS[shape.colour])
        angle = 0.0 if shape.kind == "circle" else rng.uniform(-12, 12)
        for draw, colour in zip(draws, (fill, index)):
            paint = ({"outline": colour, "width": max(4, round(shape.radius / 3))} if shape.outline
                     else {"fill": colour})
            if shape.kind == "circle":
                x, y, r = 2 * shape.x, 2 * shape.y, 2 * shape.radius
                draw.ellipse([x - r, y - r, x + r, y + r], **paint)
            else:
                draw.polygon(_polygon(shape, angle, 2), **paint)
    return image.resize((scene.width, scene.height), Image.LANCZOS), np.asarray(owners)


def position(scene: Scene, shape: Shape) -> str | None:
    """left/right/top/bottom of the image centre along the dominant axis; None when that is ambiguous (the margins
    scale with the image's short side)."""
    dx, dy, scale = shape.x - scene.width / 2, shape.y - scene.height / 2, min(scene.width, scene.height) / SIZE
    if max(abs(dx), abs(dy)) < POSITION_MIN_OFFSET * scale or abs(abs(dx) - abs(dy)) < POSITION_MIN_MARGIN * scale:
        return None
    return side_of(scene, shape)


def side_of(scene: Scene, shape: Shape) -> str:
    """left/right/top/bottom of the image centre along the dominant axis, even where `position` calls it ambiguous
    (the default model's training labels every object with it)."""
    dx, dy = shape.x - scene.width / 2, shape.y - scene.height / 2
    if abs(dx) > abs(dy):
        return "left" if dx < 0 else "right"
    return "top" if dy < 0 else "bottom"


def shape_patches(scene: Scene, grid: int) -> np.ndarray:
    """[grid*grid] bool, raster order: the patch touches some shape's bounding disc (else it is pure background).
    Patches tile the central square of the canvas, the part a CLIP processor keeps (shortest side, centre crop)."""
    side = min(scene.width, scene.height)
    step, left, top = side / grid, (scene.width - side) / 2, (scene.height - side) / 2
    touched = np.zeros((grid, grid), dtype=bool)
    for row in range(grid):
        for col in range(grid):
            x0, y0 = left + col * step, top + row * step
            for s in scene.shapes:
                nx, ny = min(max(s.x, x0), x0 + step), min(max(s.y, y0), y0 + step)
                touched[row, col] |= (nx - s.x) ** 2 + (ny - s.y) ** 2 < s.radius ** 2
    return touched.flatten()


def object_coverage(scene: Scene, grid: int) -> np.ndarray:
    """[grid*grid] float, raster order: the share of each patch's pixels that a shape paints (the scene rendered
    with and without its shapes; the background is drawn first, so it is identical in both). Patches tile the
    central square of the canvas, as in `shape_patches`."""
    with_shapes, without = (np.asarray(render(s), dtype=int) for s in (scene, replace(scene, shapes=())))
    painted = np.abs(with_shapes - without).max(-1) > 24  # ignores the resampling filter's faint ringing
    side = min(scene.width, scene.height)
    left, top = (scene.width - side) // 2, (scene.height - side) // 2
    square = painted[top:top + side, left:left + side].astype(float)
    edges = np.linspace(0, side, grid + 1).round().astype(int)
    return np.array([square[edges[r]:edges[r + 1], edges[c]:edges[c + 1]].mean()
                     for r in range(grid) for c in range(grid)])


def describe(scene: Scene, shape: Shape) -> str:
    """The shortest unambiguous name: "square" if it is the only square, else "red square"."""
    return shape.kind if sum(s.kind == shape.kind for s in scene.shapes) == 1 else shape.name


def article(word: str) -> str:
    """"a" or "an" before `word`."""
    return "an" if word[0] in "aeiou" else "a"


def caption(scene: Scene) -> str:
    """"A red circle and a blue square on a plain background." with objects listed left to right."""
    names = [f"{article(s.colour)} {s.name}" for s in sorted(scene.shapes, key=lambda s: s.x)]
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return f"{listed[0].upper()}{listed[1:]} on a {(BACKGROUNDS | SHIFTED_BACKGROUNDS)[scene.background]} background."


def absent_object(present: set[tuple[str, str]], rng: random.Random) -> tuple[str, str]:
    """A (colour, kind) pair not in `present`; half the time a hard one, whose colour is in the image on another
    shape (POPE's "adversarial" negatives), so "is this colour here?" alone cannot answer it."""
    absent = [(c, k) for c in COLOURS for k in SHAPES if (c, k) not in present]
    hard = [(c, k) for c, k in absent if any(c == pc for pc, _ in present)]
    return rng.choice(hard if hard and rng.random() < 0.5 else absent)


def ask(scene: Scene, kind: str, rng: random.Random) -> QA | None:
    """One question of `kind` about the scene, or None when the scene has nothing unambiguous to ask."""
    shapes = scene.shapes
    if kind == "colour":
        unique = [s for s in shapes if sum(t.kind == s.kind for t in shapes) == 1]
        if not unique:
            return None
        target = rng.choice(unique)
        return QA(kind, f"What {rng.choice(COLOUR_WORDS)} is the {target.kind}?", target.colour)
    if kind == "shape":
        unique = [s for s in shapes if sum(t.colour == s.colour for t in shapes) == 1]
        if not unique:
            return None
        target = rng.choice(unique)
        return QA(kind, f"What shape is the {target.colour} object?", target.kind)
    if kind == "count":
        return QA(kind, "How many shapes are there?", str(len(shapes)))
    if kind == "yesno":
        present = {(s.colour, s.kind) for s in shapes}
        if rng.random() < 0.5:
            colour, shape = rng.choice(sorted(present))
        else:
            colour, shape = absent_object(present, rng)
        answer = "yes" if (colour, shape) in present else "no"
        return QA(kind, f"Is there {article(colour)} {colour} {shape} in the image?", answer)
    if kind == "position":
        placed = [s for s in shapes if position(scene, s)]
        if not placed:
            return None
        target = rng.choice(placed)
        return QA(kind, f"Where is the {describe(scene, target)}?", position(scene, target))
    if kind == "caption":
        return QA(kind, "Describe the image.", caption(scene))
    raise ValueError(f"unknown question kind {kind!r}; known: {QUESTION_KINDS}")


def questions(scene: Scene) -> list[QA]:
    """One question of every kind the scene can answer, deterministic for the scene's seed."""
    rng = random.Random(scene.seed * 31 + 7)
    return [qa for kind in QUESTION_KINDS if (qa := ask(scene, kind, rng)) is not None]
