"""Scene generator: deterministic per seed, and every question's answer follows from the metadata alone."""

import re
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from var_core.shipped import shipped as shipped_assets
from var_core.scenes import (BACKGROUNDS, COLOURS, HELDOUT_SEED_BASE, LARGE_BACKGROUNDS, QUESTION_KINDS, SHAPES,
                             SHIFTED_BACKGROUNDS, SIZE, Scene, Shape, ask, caption, make_large_scene, make_scene,
                             make_shifted_scene, make_training_scene, make_varied_scene, object_coverage, questions,
                             render, render_with_owners, shape_patches, side_of)

SEEDS = range(300)


def solve(scene, question: str) -> str:
    """Answer a generated question from the metadata, independently of the generator's own answer code."""
    shapes = scene.shapes
    if m := re.fullmatch(r"What colou?r is the (\w+)\?", question):
        (match,) = [s for s in shapes if s.kind == m[1]]
        return match.colour
    if m := re.fullmatch(r"What shape is the (\w+) object\?", question):
        (match,) = [s for s in shapes if s.colour == m[1]]
        return match.kind
    if question == "How many shapes are there?":
        return str(len(shapes))
    if m := re.fullmatch(r"Is there an? (\w+) (\w+) in the image\?", question):
        return "yes" if any(s.colour == m[1] and s.kind == m[2] for s in shapes) else "no"
    if m := re.fullmatch(r"Where is the (?:(\w+) )?(\w+)\?", question):
        (s,) = [s for s in shapes if s.kind == m[2] and m[1] in (None, s.colour)]
        dx, dy = s.x - scene.width / 2, s.y - scene.height / 2
        assert abs(abs(dx) - abs(dy)) > 5, "position question asked about an ambiguous object"
        return ("left" if dx < 0 else "right") if abs(dx) > abs(dy) else ("top" if dy < 0 else "bottom")
    if question == "Describe the image.":
        return caption(scene)
    raise AssertionError(f"unparsed question {question!r}")


def test_same_seed_same_scene_and_pixels():
    for seed in (0, 7, 123456):
        assert make_scene(seed) == make_scene(seed)
        assert np.array_equal(np.asarray(render(make_scene(seed))), np.asarray(render(make_scene(seed))))
        assert questions(make_scene(seed)) == questions(make_scene(seed))
    assert make_scene(1) != make_scene(2)


def test_scene_metadata_is_valid_and_varied():
    scenes = [make_scene(seed) for seed in SEEDS]
    for scene in scenes:
        assert 1 <= len(scene.shapes) <= 4
        assert len({(s.colour, s.kind) for s in scene.shapes}) == len(scene.shapes)
        for s in scene.shapes:
            assert s.radius <= s.x <= SIZE - s.radius and s.radius <= s.y <= SIZE - s.radius
    assert {s.kind for sc in scenes for s in sc.shapes} == set(SHAPES)
    assert {s.colour for sc in scenes for s in sc.shapes} == set(COLOURS) and len(COLOURS) >= 6
    assert {sc.background for sc in scenes} == set(BACKGROUNDS)
    assert render(scenes[0]).size == (SIZE, SIZE)


@pytest.mark.parametrize("make", [make_scene, make_varied_scene, make_shifted_scene, make_large_scene])
def test_every_question_is_answerable_from_metadata(make):
    kinds, spellings = Counter(), Counter()
    for seed in SEEDS:
        scene = make(seed)
        for qa in questions(scene):
            assert solve(scene, qa.question) == qa.answer, (seed, qa)
            kinds[qa.kind] += 1
            spellings.update(w for w in ("colour", "color") if f"What {w} " in qa.question)
    assert set(kinds) == set(QUESTION_KINDS)
    assert spellings["colour"] > 50 and spellings["color"] > 50


def test_yes_no_negatives_are_hard_half_the_time():
    """At least half the "no" questions name a colour that is in the image, on another shape (POPE's adversarial split)."""
    hard = negatives = 0
    for seed in range(2000):
        scene = make_scene(seed)
        for qa in questions(scene):
            if qa.kind == "yesno" and qa.answer == "no":
                negatives += 1
                hard += any(s.colour == qa.question.split()[3] for s in scene.shapes)
    assert 0.5 <= hard / negatives <= 0.7  # half by design, plus the random half that happens to be hard


def test_shifted_family_is_drawn_differently():
    """Bigger shapes (up to 40 % of the short side), backgrounds and canvases the training generator never draws,
    every shape inside the central square that a CLIP centre crop keeps."""
    scenes = [make_shifted_scene(seed) for seed in SEEDS]
    assert {sc.background for sc in scenes} == set(SHIFTED_BACKGROUNDS) and not set(SHIFTED_BACKGROUNDS) & set(BACKGROUNDS)
    assert any(sc.width != sc.height for sc in scenes) and any(sc.width == sc.height for sc in scenes)
    diameters = [2 * s.radius / min(sc.width, sc.height) for sc in scenes for s in sc.shapes]
    assert max(diameters) > 0.36 and max(diameters) <= 0.4 and max(2 * s.radius for s in make_scene(0).shapes) <= 44
    for sc in scenes:
        side = min(sc.width, sc.height)
        x0, y0 = (sc.width - side) / 2, (sc.height - side) / 2
        assert 1 <= len(sc.shapes) <= 4
        for s in sc.shapes:
            assert x0 + s.radius <= s.x <= x0 + side - s.radius and y0 + s.radius <= s.y <= y0 + side - s.radius
    image = render(scenes[0])
    assert image.size == (scenes[0].width, scenes[0].height) and image.mode == "RGB"


def test_large_family_is_a_third_hand():
    """2–5 shapes of diameter 25–45 % of the short side, filled and outlined, often touching but never overlapping,
    inside the central square, on two-tone and textured backgrounds; square and non-square canvases."""
    scenes = [make_large_scene(seed) for seed in SEEDS]
    assert {len(sc.shapes) for sc in scenes} == {2, 3, 4, 5}
    assert {sc.background for sc in scenes} == set(LARGE_BACKGROUNDS)
    assert any(sc.width != sc.height for sc in scenes) and any(sc.width == sc.height for sc in scenes)
    diameters = [2 * s.radius / min(sc.width, sc.height) for sc in scenes for s in sc.shapes]
    assert 0.249 <= min(diameters) and max(diameters) <= 0.451 and max(diameters) > 0.42
    outlined = [s.outline for sc in scenes for s in sc.shapes]
    assert 0.3 < sum(outlined) / len(outlined) < 0.5
    touching = 0
    for sc in scenes:
        side = min(sc.width, sc.height)
        x0, y0 = (sc.width - side) / 2, (sc.height - side) / 2
        for s in sc.shapes:
            assert x0 + s.radius <= s.x <= x0 + side - s.radius and y0 + s.radius <= s.y <= y0 + side - s.radius
        gaps = [np.hypot(a.x - b.x, a.y - b.y) - a.radius - b.radius for i, a in enumerate(sc.shapes)
                for b in sc.shapes[i + 1:]]
        assert min(gaps) >= -0.2  # rounding to 0.1 px: never overlapping
        touching += min(gaps) < 1.5
    assert touching > len(scenes) / 2


def test_varied_training_scenes_add_five_shapes_large_shapes_outlines_and_near_neighbours():
    """v3's harder training half: 1–5 shapes, diameters up to half the side, a third outlined, often a few pixels
    from a neighbour, never overlapping, inside the 128-px square on the training backgrounds; the training
    generator alternates it with make_scene."""
    scenes = [make_varied_scene(seed) for seed in SEEDS]
    assert make_varied_scene(7) == make_varied_scene(7) and make_varied_scene(7) != make_varied_scene(9)
    assert {len(sc.shapes) for sc in scenes} == {1, 2, 3, 4, 5}
    assert {sc.background for sc in scenes} <= set(BACKGROUNDS) and {(sc.width, sc.height) for sc in scenes} == {(SIZE, SIZE)}
    diameters = [2 * s.radius / SIZE for sc in scenes for s in sc.shapes]
    assert max(diameters) > 0.45 and max(diameters) <= 0.5
    outlined = [s.outline for sc in scenes for s in sc.shapes]
    assert 0.25 < sum(outlined) / len(outlined) < 0.4
    near = 0
    for sc in scenes:
        for s in sc.shapes:
            assert s.radius <= s.x <= SIZE - s.radius and s.radius <= s.y <= SIZE - s.radius
        gaps = [np.hypot(a.x - b.x, a.y - b.y) - a.radius - b.radius for i, a in enumerate(sc.shapes)
                for b in sc.shapes[i + 1:]]
        assert min(gaps, default=5) >= 0.8  # never overlapping (rounding to 0.1 px)
        near += min(gaps, default=99) < 5
    assert near > len(scenes) / 4
    assert make_training_scene(10) == make_scene(10) and make_training_scene(11) == make_varied_scene(11)


def test_owners_are_the_painted_pixels_of_each_shape():
    """render_with_owners draws the same image as render, and marks at 2× which shape painted each subpixel: a
    patch has object pixels exactly where some shape owns a subpixel of it; an outline owns its ring only."""
    for seed in (1, 3, 1000000008):
        scene = make_training_scene(seed)
        image, owners = render_with_owners(scene)
        assert np.array_equal(np.asarray(image), np.asarray(render(scene)))
        assert owners.shape == (2 * scene.height, 2 * scene.width) and set(np.unique(owners)) <= set(range(len(scene.shapes) + 1))
        owned = owners.reshape(8, 32, 8, 32).max((1, 3)).flatten() > 0
        assert np.array_equal(owned, object_coverage(scene, 8) > 0), seed
    ring = Scene(seed=3, background="plain", shapes=(Shape("circle", "blue", 64, 64, 40, outline=True),))
    assert render_with_owners(ring)[1][128, 128] == 0 and render_with_owners(ring)[1][128, 128 + 78] == 1
    assert side_of(ring, Shape("star", "red", 60, 20, 10)) == "top" and side_of(ring, Shape("star", "red", 50, 60, 10)) == "left"


def test_an_outlined_shape_paints_its_edge_not_its_inside():
    filled = Scene(seed=3, background="plain", shapes=(Shape("circle", "blue", 64, 64, 40),))
    outlined = Scene(seed=3, background="plain", shapes=(Shape("circle", "blue", 64, 64, 40, outline=True),))
    centre = 3 * 8 + 3  # the patch at the circle's centre (8 × 8 grid of 16 px)
    assert object_coverage(filled, 8)[centre] == 1.0 and object_coverage(outlined, 8)[centre] == 0.0
    assert object_coverage(outlined, 8).sum() > 1.0  # the ring itself is drawn
    shipped = np.asarray(Image.open(shipped_assets("assets") / "examples" / "scene_08.png").convert("RGB"))
    assert np.array_equal(np.asarray(render(make_scene(1000000008))), shipped)  # filled shapes draw as before


def test_yes_no_is_balanced():
    answers = Counter(qa.answer for seed in range(1000) for qa in questions(make_scene(seed)) if qa.kind == "yesno")
    assert set(answers) == {"yes", "no"}
    assert 0.45 <= answers["yes"] / sum(answers.values()) <= 0.55


def test_unknown_kind_is_rejected():
    import random

    with pytest.raises(ValueError, match="unknown question kind"):
        ask(make_scene(0), "smell", random.Random(0))


@pytest.mark.parametrize("make", [make_scene, make_shifted_scene, make_large_scene])
def test_object_coverage_counts_painted_pixels_inside_the_bounding_discs(make):
    """Painted pixels per patch: only where a shape's bounding disc reaches (shape_patches), full at a big shape's
    centre, zero on a plain background far from every shape."""
    for seed in range(HELDOUT_SEED_BASE, HELDOUT_SEED_BASE + 20):
        scene = make(seed)
        coverage, touched = object_coverage(scene, 8), shape_patches(scene, 8)
        assert coverage.shape == (64,) and ((coverage >= 0) & (coverage <= 1)).all()
        assert (coverage[~touched] <= 0.07).all()  # edge anti-aliasing may reach one pixel row (1/16) past the disc
        assert coverage[touched].max() > 0.2
    plain = Scene(seed=3, background="plain", shapes=(Shape("square", "blue", 40, 40, 22),))
    coverage = object_coverage(plain, 8)
    assert coverage[2 * 8 + 2] == 1.0 and coverage[7 * 8 + 7] == 0.0
