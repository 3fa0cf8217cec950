"""Which null word makes background patches visual sinks? Oracle visual tokens through the pretrained SmolLM2.

Each held-out scene's 64 visual tokens are set to their stage-1b targets exactly (`train_default_model.patch_targets`:
an object patch → the mean of its label words, a background patch → the candidate null word), and visual sinks are
counted as the training monitor counts them (φ over the registry's sink dims > τ, residual streams entering layers
2 … L−2). This is the measurement behind `NULL_WORD` (model card, run 14). No trained weight is involved.

    python -m scripts.null_word_probe [--scenes 12] [--words " ,<|endoftext|>"]
"""

from __future__ import annotations

import argparse
import json

import torch
from PIL import Image

from scripts import train_default_model as T
from var_core.models import default as D
from var_core.models.generic import chat_messages
from var_core.scenes import HELDOUT_SEED_BASE, make_scene, make_varied_scene, render_with_owners

FAMILIES = {"make_scene": make_scene, "make_varied_scene": make_varied_scene}
LABEL_KINDS = {"v2 (colour, shape)": ("colour", "shape"), "v3 (colour, shape, side, count)": ("colour", "shape", "side", "count")}


@torch.no_grad()
def sink_mask(model, input_ids, image_positions, visual_tokens) -> torch.Tensor:
    """[64] bool: which visual tokens are sinks when the image positions hold `visual_tokens`."""
    embeds = model.get_input_embeddings()(input_ids).clone()
    embeds[0, image_positions] = visual_tokens
    hidden = model.model.language_model(inputs_embeds=embeds, output_hidden_states=True).hidden_states
    return T.visual_sinks(hidden, image_positions[None])[0, image_positions]


def probe(scenes: int, words: list[str]) -> dict:
    """Per family × label kinds × null word: sinks per image, and how many sit on object patches or the first cell."""
    lm_dir = D.cached_language_model()
    processor = D.build_processor(lm_dir)
    model = D.build_model(lm_dir, processor, initialise=False).eval()
    text = processor.apply_chat_template(chat_messages("How many shapes are there?"), add_generation_prompt=True)
    input_ids = processor(images=Image.new("RGB", (D.IMAGE_SIZE,) * 2), text=text, return_tensors="pt")["input_ids"]
    image_positions = input_ids[0] == model.config.image_token_id
    results = {}
    for family, make in FAMILIES.items():
        drawn = [make(seed) for seed in range(HELDOUT_SEED_BASE, HELDOUT_SEED_BASE + scenes)]
        labels = [T.patch_labels(scene, render_with_owners(scene)[1]) for scene in drawn]
        for kinds_name, kinds in LABEL_KINDS.items():
            for word in words:
                targets = {k: v for k, v in T.word_targets(model, processor, word).items() if k in kinds}
                masks = [sink_mask(model, input_ids, image_positions, T.patch_targets(targets, patch)) for patch in labels]
                total = sum(int(m.sum()) for m in masks)
                results[f"{family} | {kinds_name} | null {word!r}"] = {
                    "sinks_per_image": [int(m.sum()) for m in masks],
                    "on_object_patches": sum(int((m & (patch["shape"] > 0)).sum()) for m, patch in zip(masks, labels)),
                    "at_first_cell": sum(int(m[0]) for m in masks), "total": total}
                print(next(reversed(results)), json.dumps(results[next(reversed(results))]), flush=True)
    return results


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenes", type=int, default=12, help="held-out scenes per family")
    parser.add_argument("--words", default=" ,<|endoftext|>", help="candidate null words, comma-separated")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    probe(args.scenes, args.words.split(","))


if __name__ == "__main__":
    main()
