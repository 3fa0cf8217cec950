"""Held-out accuracy of the default model per question kind, on both scene families (greedy answers, exact match).

The families are `var_core.scenes.make_scene` (the training generator, seeds from HELDOUT_SEED_BASE on, never
trained on), `make_shifted_scene` (drawn differently; evaluation only) and `make_large_scene` (a third hand: 2–5
large shapes, filled or outlined, some touching; evaluation only). Colour questions come from scenes with
2–4 shapes only, where the colour must be bound to the right shape. Answers are generated in left-padded batches
through the same chat template and processor as the app.
"""

from __future__ import annotations

import random
from collections import defaultdict

import torch

from var_core.eval.metrics import wilson_interval
from var_core.models.generic import chat_messages
from var_core.scenes import HELDOUT_SEED_BASE, QA, ask, make_large_scene, make_scene, make_shifted_scene, render

FAMILIES = {"training-like": make_scene, "shifted": make_shifted_scene, "large": make_large_scene}
KINDS = ("colour", "shape", "count", "yesno", "position")
MAX_SCENES = 20_000  # a guard: every kind fills its quota long before this


def normalise(text: str) -> str:
    """Exact-match form of an answer: case, surrounding spaces and a final full stop do not count."""
    return text.strip().strip(".").strip().lower()


def heldout_questions(family: str, per_kind: int, kinds=KINDS) -> list[tuple[object, QA]]:
    """per_kind (scene, question) pairs of every kind from the family's held-out seeds, one question per scene and
    kind; deterministic."""
    if family not in FAMILIES:
        raise ValueError(f"unknown scene family {family!r}; the families are: {', '.join(FAMILIES)}")
    make, wanted, found = FAMILIES[family], {kind: per_kind for kind in kinds}, []
    for seed in range(HELDOUT_SEED_BASE, HELDOUT_SEED_BASE + MAX_SCENES):
        if not any(wanted.values()):
            return found
        scene, rng = make(seed), random.Random(seed * 31 + 7)
        for kind in kinds:
            if wanted[kind] and not (kind == "colour" and len(scene.shapes) < 2) and (qa := ask(scene, kind, rng)):
                found.append((scene, qa))
                wanted[kind] -= 1
    raise RuntimeError(f"only {len(found)} held-out questions found in {MAX_SCENES} scenes")


@torch.no_grad()
def greedy_answers(bundle, images, prompts, batch_size: int = 32, max_new_tokens: int = 4) -> list[str]:
    """Greedy answers to (image, prompt) pairs, in left-padded batches of the app's single-turn chat."""
    processor, answers = bundle.processor, []
    side = processor.tokenizer.padding_side
    processor.tokenizer.padding_side = "left"
    try:
        for start in range(0, len(prompts), batch_size):
            texts = [processor.apply_chat_template(chat_messages(p), add_generation_prompt=True)
                     for p in prompts[start:start + batch_size]]
            inputs = processor(images=images[start:start + batch_size], text=texts, padding=True,
                               return_tensors="pt").to(bundle.model.device)
            out = bundle.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
            answers += processor.tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    finally:
        processor.tokenizer.padding_side = side
    return answers


def score(pairs, answers) -> dict[str, dict]:
    """Accuracy with its 95 % Wilson interval per kind; for yes/no also how often it said yes and how it does on
    the hard negatives (the colour is in the image, on another shape)."""
    hits, totals, extra = defaultdict(int), defaultdict(int), defaultdict(int)
    for (scene, qa), answer in zip(pairs, answers, strict=True):
        right = normalise(answer) == normalise(qa.answer)
        hits[qa.kind] += right
        totals[qa.kind] += 1
        if qa.kind == "yesno":
            extra["said_yes"] += normalise(answer) == "yes"
            colour = qa.question.split()[3]  # "Is there a(n) <colour> <shape> in the image?"
            if qa.answer == "no" and any(s.colour == colour for s in scene.shapes):
                extra["hard"] += 1
                extra["hard_right"] += right
    result = {}
    for kind in totals:
        low, high = wilson_interval(hits[kind], totals[kind])
        result[kind] = {"accuracy": round(hits[kind] / totals[kind], 4), "n": totals[kind],
                        "ci95": [round(low, 4), round(high, 4)]}
    if totals["yesno"]:
        result["yesno"].update(answered_yes=round(extra["said_yes"] / totals["yesno"], 4), hard_negatives=extra["hard"],
                               hard_negative_accuracy=round(extra["hard_right"] / max(1, extra["hard"]), 4))
    return result


def evaluate_default_model(bundle, per_kind: int = 300, kinds=KINDS) -> dict[str, dict]:
    """{family: {kind: accuracy, n, ci95 (+ yes/no extras)}} on per_kind held-out questions of each kind."""
    report = {}
    for family in FAMILIES:
        pairs = heldout_questions(family, per_kind, tuple(kinds))
        answers = greedy_answers(bundle, [render(scene) for scene, _ in pairs], [qa.question for _, qa in pairs])
        report[family] = score(pairs, answers)
    return report
