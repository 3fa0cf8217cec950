"""Samples for the experiments: bundled synthetic scenes, a user's POPE-format jsonl, or a folder of images."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from var_core.images import prepare_image
from var_core.scenes import HELDOUT_SEED_BASE, absent_object, article, make_scene, questions, render

EVAL_SEED_BASE = HELDOUT_SEED_BASE + 500_000  # held-out scenes, away from the ones training evaluates on
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")
FOLDER_QUESTIONS = ("Describe the image.", "Is there a person in the image?", "What colour is the largest object?")


@dataclass(frozen=True)
class Sample:
    """One question about one image. source: "scene:<seed>" or an image file path; label: "yes"/"no" or None."""

    id: str
    image_id: str
    source: str
    question: str
    label: str | None = None

    def image(self) -> Image.Image:
        if self.source.startswith("scene:"):
            return render(make_scene(int(self.source.split(":", 1)[1])))
        return prepare_image(self.source)


def _yes_no_question(seed: int, want_yes: bool) -> tuple[str, str]:
    """A POPE-style existence question about scene `seed` with the requested answer; negatives are "hard"
    (the colour is in the image, on another shape) half of the time, as in the scene generator."""
    scene, rng = make_scene(seed), random.Random(seed * 17 + 3)
    present = sorted({(s.colour, s.kind) for s in scene.shapes})
    if want_yes:
        colour, shape = rng.choice(present)
    else:
        colour, shape = absent_object(set(present), rng)
    return f"Is there {article(colour)} {colour} {shape} in the image?", "yes" if want_yes else "no"


def synthetic_pope(n: int, seed: int = 0) -> list[Sample]:
    """n balanced yes/no object-existence questions (even index → yes), one per held-out scene."""
    samples = []
    for index in range(n):
        scene_seed = EVAL_SEED_BASE + seed * 100_000 + index
        question, label = _yes_no_question(scene_seed, index % 2 == 0)
        samples.append(Sample(f"scene{scene_seed}-pope", f"scene{scene_seed}", f"scene:{scene_seed}", question, label))
    return samples


def synthetic_multi_question(n_images: int, seed: int = 0) -> list[Sample]:
    """Every question the scene generator asks (colour, shape, count, yes/no, position, caption) about n scenes."""
    samples = []
    for index in range(n_images):
        scene_seed = EVAL_SEED_BASE + seed * 100_000 + index
        for qa in questions(make_scene(scene_seed)):
            label = qa.answer if qa.kind == "yesno" else None
            samples.append(Sample(f"scene{scene_seed}-{qa.kind}", f"scene{scene_seed}", f"scene:{scene_seed}",
                                  qa.question, label))
    return samples


def load_pope(path, image_dir, limit: int | None = None) -> list[Sample]:
    """POPE jsonl lines {"question_id", "image", "text", "label"} (also "id"/"question"/"answer") + image folder."""
    path, image_dir = Path(path), Path(image_dir)
    samples = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            image, text = row["image"], row.get("text", row.get("question"))
            label = str(row.get("label", row.get("answer"))).strip().lower()
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise ValueError(f"{path}:{number}: not a POPE line with image, text, label ({error})") from None
        if text is None or label not in ("yes", "no"):
            raise ValueError(f"{path}:{number}: needs a question ('text') and a yes/no 'label', got {row}")
        source = image_dir / image
        if not source.is_file():
            raise ValueError(f"{path}:{number}: image {source} does not exist (check --image-dir)")
        ident = str(row.get("question_id", row.get("id", number)))
        samples.append(Sample(f"pope{ident}", str(image), str(source), text, label))
        if limit is not None and len(samples) >= limit:
            break
    return samples


def image_folder(folder, questions=FOLDER_QUESTIONS, limit: int | None = None) -> list[Sample]:
    """Every image in `folder` (sorted) × every question; no labels (for the sinks / contribution probes)."""
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    files = files[:limit] if limit else files
    return [Sample(f"{p.name}-q{k}", p.name, str(p), q) for p in files for k, q in enumerate(questions)]
