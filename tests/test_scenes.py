"""Scene generator: deterministic per seed, and every question's answer follows from the metadata alone."""

import re
from collections import Counter

import numpy as np
import pytest

from var_core.scenes import (BACKGROUNDS, COLOURS, QUESTION_KINDS, SHAPES, SIZE, ask, caption, make_scene,
                             questions, render)

SEEDS = range(300)


def solve(scene, question: str) -> str:
    """Answer a generated question from the metadata, independently of the generator's own answer code."""
    shapes = scene.shapes
    if m := re.fullmatch(r"What colour is the (\w+)\?", question):
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
        dx, dy = s.x - SIZE / 2, s.y - SIZE / 2
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


def test_every_question_is_answerable_from_metadata():
    kinds = Counter()
    for seed in SEEDS:
        scene = make_scene(seed)
        for qa in questions(scene):
            assert solve(scene, qa.question) == qa.answer, (seed, qa)
            kinds[qa.kind] += 1
    assert set(kinds) == set(QUESTION_KINDS)


def test_yes_no_is_balanced():
    answers = Counter(qa.answer for seed in range(1000) for qa in questions(make_scene(seed)) if qa.kind == "yesno")
    assert set(answers) == {"yes", "no"}
    assert 0.45 <= answers["yes"] / sum(answers.values()) <= 0.55


def test_unknown_kind_is_rejected():
    import random

    with pytest.raises(ValueError, match="unknown question kind"):
        ask(make_scene(0), "smell", random.Random(0))
