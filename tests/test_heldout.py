"""Held-out evaluation of the default model: which questions, how answers are batched, how they are scored."""

from collections import Counter

import pytest

from tests.tiny_llava import tiny_llava
from var_core.eval.heldout import KINDS, greedy_answers, heldout_questions, normalise, score
from var_core.scenes import QA, Scene, Shape, make_scene, render


def test_questions_fill_every_kind_deterministically_and_colour_needs_two_shapes():
    pairs = heldout_questions("training-like", 6)
    assert Counter(qa.kind for _, qa in pairs) == {kind: 6 for kind in KINDS}
    assert all(len(scene.shapes) >= 2 for scene, qa in pairs if qa.kind == "colour")
    assert [qa for _, qa in pairs] == [qa for _, qa in heldout_questions("training-like", 6)]
    shifted = heldout_questions("shifted", 6)
    assert {scene.seed for scene, _ in shifted} & {scene.seed for scene, _ in pairs}  # same seeds …
    assert [s.shapes for s, _ in shifted] != [s.shapes for s, _ in pairs]  # … drawn by another generator


def test_normalise_ignores_case_spaces_and_a_final_full_stop():
    assert normalise(" Blue.\n") == "blue" and normalise("3") == "3" and normalise("no") != normalise("not")


def test_score_counts_accuracy_yes_rate_and_hard_negatives_by_hand():
    scene = Scene(seed=1, background="plain", shapes=(Shape("circle", "red", 30, 30, 12),
                                                      Shape("square", "blue", 90, 90, 12)))
    pairs = [(scene, QA("colour", "What colour is the circle?", "red")),
             (scene, QA("colour", "What colour is the square?", "blue")),
             (scene, QA("yesno", "Is there a red circle in the image?", "yes")),
             (scene, QA("yesno", "Is there a blue circle in the image?", "no")),  # hard: blue is on the square
             (scene, QA("yesno", "Is there a green star in the image?", "no"))]
    result = score(pairs, ["Red.", "red", "yes", "yes", "no"])
    assert result["colour"]["accuracy"] == 0.5 and result["colour"]["n"] == 2
    low, high = result["colour"]["ci95"]
    assert 0 < low < 0.5 < high < 1
    assert result["yesno"]["accuracy"] == pytest.approx(2 / 3, abs=1e-4)
    assert result["yesno"]["answered_yes"] == pytest.approx(2 / 3, abs=1e-4)
    assert result["yesno"]["hard_negatives"] == 1 and result["yesno"]["hard_negative_accuracy"] == 0.0


def test_batched_greedy_answers_equal_one_at_a_time():
    """Left padding must not change any answer: prompts of different lengths, batched vs alone."""
    bundle = tiny_llava(seed=5)  # a seed whose answers differ by prompt, some ending early
    images = [render(make_scene(seed)) for seed in range(4)]
    prompts = ["what colour is the square ?", "how many shapes are there ?", "where is the red circle ?",
               "is there a blue square in the image ?"]
    batched = greedy_answers(bundle, images, prompts, batch_size=4, max_new_tokens=3)
    alone = [greedy_answers(bundle, [image], [prompt], batch_size=1, max_new_tokens=3)[0]
             for image, prompt in zip(images, prompts)]
    assert batched == alone and len(set(alone)) > 1
