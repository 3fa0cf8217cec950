"""Train the default model: vision tower + projector on synthetic scenes, then LoRA adapters on SmolLM2, then evaluate.

Stage 1 (cheap, tower only): dense per-patch labels from the scene metadata (the colour, shape and side of the
    object that paints the patch, the scene's count, shape centres), so the from-scratch tower learns what is where
    before it has to talk to the LLM (LLaVA starts from CLIP).
Stage 1b (cheap, projector only): map each patch's features to the LLM's word embeddings of its labels: an object
    patch to the mean of " red", " square", " left" and " three", a background patch to `<|endoftext|>`. That
    choice is what gives the model visual sinks (METHOD.md §4b): SmolLM2 itself turns such null-like tokens into a
    massive activation in its sink dimension. Nothing here looks at φ.
Stage 2 (LLaVA's stage 2 with a LoRA-adapted LLM): rank-32 adapters on every projection of decoder layers 4–29
    (layers 0–3, which make the massive activation, stay pretrained) learn to answer through the LLM, tower and
    projector frozen (so background patches stay null-like), loss on answer tokens only. Each image's questions are packed into one row (shared chat header + image tokens, one tail
    per question, a block attention mask), which computes exactly the separate single-turn chats' losses.
Writes default_model.safetensors (tower + projector + adapters, float16) and default_model_train.json (command,
config, per-stage wall time, training-time monitor, held-out accuracy on the three scene families) into
--checkpoints; copy them into assets/ to ship them (only weights that beat the shipped ones: model card).

    python -m scripts.train_default_model --save-every 25        # from scratch; Ctrl-C, then the same with --resume
    python -m scripts.train_default_model --eval-only             # score the shipped weights
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from var_core.models import default as D
from var_core.models.generic import chat_messages
from var_core.models.lora import add_lora, load_lora, lora_state
from var_core.registry import get_backbone
from var_core.scenes import (COLOURS, HELDOUT_SEED_BASE, SHAPES, SIZE, ask, make_training_scene, render,
                             render_with_owners, side_of)
from var_core.sink import phi

GRID = SIZE // D.PATCH_SIZE
# Kinds trained and evaluated, with sampling weights. Captions are left out: their long answers cost ~3× the
# compute per example.
KIND_WEIGHTS = {"colour": 1.5, "shape": 1.0, "count": 2.0, "yesno": 2.0, "position": 2.0}  # default of --kind-weights
# What background patches are mapped to in stage 1b: SmolLM2's `<|endoftext|>` (id 0). v2 used the space token " ",
# whose massive activation depends on the tokens before it: with v3's object targets (word-like, on every painted
# patch) only 2–31 of 64 oracle tokens became sinks (often just the first two cells), against 13–58 per image, all
# on background, with `<|endoftext|>` (12 scenes per family; model card, run 14).
NULL_WORD = "<|endoftext|>"
SIDES = ("left", "right", "top", "bottom")  # an object's side of the image centre (`scenes.side_of`)
COUNT_WORDS = ("one", "two", "three", "four", "five")  # the scene's number of shapes, as a word
MAX_COUNT = len(COUNT_WORDS)
# A patch is an object's when that object paints at least this many of its (2× supersampled) subpixels: then every
# patch with an object pixel (`scenes.object_coverage` > 0; 0 of 4,760 missed on 300 training scenes) gets its
# object's target, and none of them is taught to look like the null word.
OBJECT_MIN_SUBPIXELS = 1
BACKGROUND_WEIGHT = 0.1  # stage-1 loss weight of the background class in the per-patch labels
# Stage-1 weight of the shape loss. Shape needs several patches and is the slowest label to learn: at weight 1 the
# tower knew the shape of 42% of object patches after 200 steps of 64 (every later stage-2 run then answered shape
# questions at chance); at weight 5 it knew 92% after 600 steps of 32, in the same 3 minutes.
SHAPE_LOSS_WEIGHT = 5.0
PROBE_SCENES = 256  # held-out scenes on which stage 1 reports its per-patch accuracy
MONITOR_SCENES = 16  # held-out scenes of the stage-2 monitor (first-token accuracy, visual sinks per image)
ALIGN_SEED_BASE, STAGE2_SEED_BASE = 5_000_000, 10_000_000  # stage 1 seeds start at 0; evaluation at HELDOUT_SEED_BASE
CHECKPOINTS = Path("checkpoints/default_model")  # git-ignored; --resume continues from here


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stage1-steps", type=int, default=3000)
    p.add_argument("--stage1-batch", type=int, default=32)
    p.add_argument("--stage1-lr", type=float, default=1e-3)
    p.add_argument("--align-steps", type=int, default=3000)
    p.add_argument("--align-lr", type=float, default=1e-3, help="stage-1b projector learning rate")
    p.add_argument("--stage2-steps", type=int, default=450)
    p.add_argument("--stage2-batch", type=int, default=8, help="images per stage-2 step")
    p.add_argument("--questions-per-image", type=int, default=6, help="stage-2 questions packed into one row per image")
    p.add_argument("--kind-weights", type=parse_kind_weights, default=dict(KIND_WEIGHTS),
                   help="stage-2 question mix, e.g. colour=2,yesno=2 (unnamed kinds keep their default weight)")
    p.add_argument("--lora-lr", type=float, default=5e-4)
    p.add_argument("--projector-lr", type=float, default=0.0, help="stage-2 projector learning rate (0: frozen)")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--save-every", type=int, default=25, help="checkpoint every N stage-2 steps (for --resume)")
    p.add_argument("--monitor-every", type=int, default=50, help="held-out accuracy + visual sinks every N steps")
    p.add_argument("--eval-questions", type=int, default=300, help="held-out questions per kind and scene family")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--checkpoints", type=Path, default=CHECKPOINTS)
    p.add_argument("--weights", type=Path,
                   help="where the weights (and the report beside them) are written while training and then scored "
                        "(default: default_model.safetensors in --checkpoints; with --eval-only the shipped file)")
    p.add_argument("--resume", action="store_true", help="continue the run whose checkpoints are in --checkpoints")
    p.add_argument("--tower-from", type=Path,
                   help="a run's --checkpoints folder: take its stage-1 tower (and numbers) instead of training one")
    p.add_argument("--eval-only", action="store_true", help="evaluate the shipped weights, do not train")
    return p.parse_args(argv)


def parse_kind_weights(text: str) -> dict[str, float]:
    """'colour=2,yesno=2' -> KIND_WEIGHTS with those kinds overridden."""
    weights = dict(KIND_WEIGHTS)
    for item in filter(None, text.split(",")):
        kind, _, value = item.partition("=")
        if kind not in weights:
            raise argparse.ArgumentTypeError(f"unknown question kind {kind!r}; kinds: {', '.join(weights)}")
        weights[kind] = float(value)
    return weights


def patch_labels(scene, owners) -> dict[str, torch.Tensor]:
    """Per-patch classes (0 = background) of the object that paints most of the patch (`render_with_owners`):
    colour, shape, its side of the image centre; the scene's number of shapes (on every patch); and whether the
    patch holds a shape's centre (an instance signal for stage 1 only: it is in no stage-1b target)."""
    step = owners.shape[0] // GRID
    cells = torch.from_numpy(owners.astype("int64")).reshape(GRID, step, GRID, step).permute(0, 2, 1, 3).flatten(2)
    painted = F.one_hot(cells, len(scene.shapes) + 1)[..., 1:].sum(2).flatten(0, 1)  # [patches, shapes]
    most, owner = painted.max(-1) if scene.shapes else (torch.zeros(GRID * GRID), torch.zeros(GRID * GRID))
    labels = {key: torch.zeros(GRID * GRID, dtype=torch.long) for key in ("colour", "shape", "side", "centre")}
    for index, shape in enumerate(scene.shapes):
        mine = (owner == index) & (most >= OBJECT_MIN_SUBPIXELS)
        labels["colour"][mine] = list(COLOURS).index(shape.colour) + 1
        labels["shape"][mine] = SHAPES.index(shape.kind) + 1
        labels["side"][mine] = SIDES.index(side_of(scene, shape)) + 1
        labels["centre"][int(shape.y * GRID / scene.height) * GRID + int(shape.x * GRID / scene.width)] = 1
    labels["count"] = torch.full((GRID * GRID,), len(scene.shapes))
    return labels


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 10%."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def trainable_model():
    """(model, processor): SmolLM2 frozen (stage 2 adds adapters), a randomly initialised tower + projector."""
    lm_dir = D.cached_language_model()
    processor = D.build_processor(lm_dir)
    model = D.build_model(lm_dir, processor)
    model.requires_grad_(False)
    model.model.vision_tower.requires_grad_(True)
    model.model.multi_modal_projector.requires_grad_(True)
    return model, processor


def optimiser_step(opt, loss: torch.Tensor, lr: float, bar) -> None:
    """One step of stages 1 / 1b at the scheduled learning rate; the loss goes to the progress bar."""
    for group in opt.param_groups:
        group["lr"] = lr
    opt.zero_grad()
    loss.backward()
    opt.step()
    bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)


def labelled_batch(processor, first_seed: int, size: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Training scenes first_seed … first_seed+size−1 → (pixel_values, per-patch labels [size, patches] by kind)."""
    scenes = [make_training_scene(seed) for seed in range(first_seed, first_seed + size)]
    drawn = [render_with_owners(scene) for scene in scenes]
    pixels = processor.image_processor([image for image, _ in drawn], return_tensors="pt")["pixel_values"]
    labels = [patch_labels(scene, owners) for scene, (_, owners) in zip(scenes, drawn)]
    return pixels, {key: torch.stack([patch[key] for patch in labels]) for key in labels[0]}


# Stage-1 heads over each patch token, their class counts (0 = background; count: the scene's 1 … 5 shapes as
# classes 0 … 4, on every patch; centre: 1 on the patch that holds a shape's centre) and loss weights.
HEADS = {"colour": len(COLOURS) + 1, "shape": len(SHAPES) + 1, "side": len(SIDES) + 1, "count": MAX_COUNT,
         "centre": 2}
HEAD_LOSS_WEIGHTS = {"colour": 1.0, "shape": SHAPE_LOSS_WEIGHT, "side": 1.0, "count": 2.0, "centre": 1.0}


def stage1_loss(heads, hidden: torch.Tensor, labels: dict[str, torch.Tensor]) -> torch.Tensor:
    """Weighted per-patch cross-entropy of every head; background down-weighted where it is a class."""
    loss = hidden.new_zeros(())
    for name, classes in HEADS.items():
        target = labels[name] - 1 if name == "count" else labels[name]
        weight = torch.ones(classes)
        if name not in ("count", "centre"):
            weight[0] = BACKGROUND_WEIGHT  # most patches are background: unweighted, the tower learns little else
        loss = loss + HEAD_LOSS_WEIGHTS[name] * F.cross_entropy(heads[name](hidden).flatten(0, 1), target.flatten(),
                                                                weight=weight)
    return loss


def stage1(model, processor, args) -> dict[str, float]:
    """Pre-train the tower alone on dense scene labels (discarded heads); returns its held-out per-patch accuracy."""
    tower, width = model.model.vision_tower, model.config.vision_config.hidden_size
    heads = torch.nn.ModuleDict({name: torch.nn.Linear(width, classes) for name, classes in HEADS.items()})
    params = list(tower.parameters()) + list(heads.parameters())
    opt = torch.optim.AdamW(params, lr=args.stage1_lr, weight_decay=0.01)
    bar = tqdm(range(args.stage1_steps), desc="stage 1 (tower)", mininterval=5)
    for step in bar:
        pixels, labels = labelled_batch(processor, step * args.stage1_batch, args.stage1_batch)
        hidden = tower(pixel_values=pixels).last_hidden_state[:, 1:]  # patch tokens, CLS dropped
        optimiser_step(opt, stage1_loss(heads, hidden, labels),
                       args.stage1_lr * lr_factor(step, args.stage1_steps, args.warmup), bar)
    return patch_accuracy(tower, heads, processor)


@torch.no_grad()
def patch_accuracy(tower, heads, processor) -> dict[str, float]:
    """Held-out share of object patches whose colour / shape / side / scene count the stage-1 heads name rightly,
    of background patches called background, of images whose object patches' majority count is right, and of
    centre patches found (and other patches wrongly called centres)."""
    pixels, labels = labelled_batch(processor, HELDOUT_SEED_BASE, PROBE_SCENES)
    hidden = tower(pixel_values=pixels).last_hidden_state[:, 1:]
    guess = {name: heads[name](hidden).argmax(-1) for name in HEADS}
    guess["count"] = guess["count"] + 1
    on_object, centres = labels["shape"] > 0, labels["centre"] > 0
    result = {name: round((guess[name] == labels[name])[on_object].float().mean().item(), 4)
              for name in HEADS if name != "centre"}
    result["centre_found"] = round((guess["centre"] == 1)[centres].float().mean().item(), 4)
    result["centre_false_alarms"] = round((guess["centre"] == 1)[~centres].float().mean().item(), 4)
    result["background"] = round((guess["shape"] == 0)[~on_object].float().mean().item(), 4)
    votes = torch.stack([torch.bincount(g[o], minlength=MAX_COUNT + 1).argmax() if o.any() else g[0]
                         for g, o in zip(guess["count"], on_object)])
    result["count_per_image"] = round((votes == labels["count"][:, 0]).float().mean().item(), 4)
    return result


def word_targets(model, processor, null_word: str = NULL_WORD) -> dict[str, torch.Tensor]:
    """Per label kind, [classes, 576] word embeddings (the LLM's " red", " square", " left", " three"); row 0 of each
    is the null word's embedding, the background's. A patch's stage-1b target is their mean (`patch_targets`)."""
    embed = model.get_input_embeddings().weight.detach()

    def word(text):
        return embed[processor.tokenizer(text, add_special_tokens=False)["input_ids"]].mean(0)

    words = {"colour": list(COLOURS), "shape": list(SHAPES), "side": list(SIDES), "count": list(COUNT_WORDS)}
    return {name: torch.stack([word(null_word)] + [word(f" {w}") for w in names]) for name, names in words.items()}


def patch_targets(targets: dict[str, torch.Tensor], labels: dict[str, torch.Tensor]) -> torch.Tensor:
    """[..., 576] stage-1b targets: an object patch → the mean of its colour, shape, side and count words; a
    background patch → the null word (every kind's row 0)."""
    on_object = labels["shape"] > 0
    return sum(targets[name][torch.where(on_object, labels[name], 0)] for name in targets) / len(targets)


def stage_align(model, processor, args) -> None:
    """Warm-start the projector: map each patch to its labels' word embeddings (tower frozen, no LLM pass)."""
    tower, projector, targets = model.model.vision_tower, model.model.multi_modal_projector, word_targets(model, processor)
    scale = patch_targets(targets, {name: torch.ones(1, dtype=torch.long) for name in targets}).pow(2).sum()
    opt = torch.optim.AdamW(projector.parameters(), lr=args.align_lr)
    bar = tqdm(range(args.align_steps), desc="stage 1b (projector)", mininterval=5)
    for step in bar:
        pixels, labels = labelled_batch(processor, ALIGN_SEED_BASE + step * args.stage1_batch, args.stage1_batch)
        with torch.no_grad():
            hidden = tower(pixel_values=pixels).last_hidden_state[:, 1:]
        loss = (projector(hidden) - patch_targets(targets, labels)).pow(2).sum(-1).mean() / scale
        optimiser_step(opt, loss, args.align_lr * lr_factor(step, args.align_steps, args.warmup), bar)
    return alignment_quality(tower, projector, targets, processor)


@torch.no_grad()
def alignment_quality(tower, projector, targets, processor) -> dict[str, float]:
    """Held-out check of stage 1b: per label kind, the share of object patches whose projected token is nearer
    (cosine) to its own label's target than to any other label's of that kind (the other kinds kept right); the
    share of background patches nearest the null word among all targets, and their mean cosine to it. A projector
    that did not train scores near chance here, before the hour of stage 2 is spent."""
    pixels, labels = labelled_batch(processor, HELDOUT_SEED_BASE, 64)
    tokens = F.normalize(projector(tower(pixel_values=pixels).last_hidden_state[:, 1:]), dim=-1)
    on_object = labels["shape"] > 0
    result = {}
    for name, table in targets.items():
        options = torch.stack([F.normalize(patch_targets(targets, {**labels, name: torch.full_like(labels[name], k)}), dim=-1)
                               for k in range(1, len(table))], -1)  # [batch, patches, 576, classes]
        nearest = torch.einsum("bpd,bpdk->bpk", tokens, options).argmax(-1) + 1
        result[f"object_{name}_nearest_right"] = round((nearest == labels[name])[on_object].float().mean().item(), 4)
    null = F.normalize(targets["shape"][0], dim=-1)
    background = tokens[~on_object]
    object_targets = F.normalize(patch_targets(targets, labels)[on_object], dim=-1).unique(dim=0)
    result["background_nearer_null_than_any_object_target"] = round(
        ((background @ null)[:, None] > background @ object_targets.T).all(-1).float().mean().item(), 4)
    result["background_cosine_to_null"] = round((background @ null).mean().item(), 4)
    return result


def image_questions(seed: int, per_image: int, kind_weights: dict[str, float]) -> tuple:
    """(image, [(question, answer), ...]): up to per_image distinct questions about scene `seed`, kinds drawn by
    kind_weights, with as many "no" as "yes" questions so the yes/no split stays 50/50."""
    scene, rng = make_training_scene(seed), random.Random(seed)
    kinds, found = list(kind_weights), {}
    for _ in range(8 * per_image):  # enough draws to fill per_image unless the scene has fewer distinct questions
        if len(found) == per_image:
            break
        qa = ask(scene, rng.choices(kinds, weights=[kind_weights[k] for k in kinds])[0], rng)
        if qa is not None:
            found.setdefault(qa.question, qa)
    yes = [q for q, qa in found.items() if qa.kind == "yesno" and qa.answer == "yes"]
    no = [q for q, qa in found.items() if qa.kind == "yesno" and qa.answer == "no"]
    dropped = set(yes[min(len(yes), len(no)):] + no[min(len(yes), len(no)):])
    return render(scene), [(q, qa.answer) for q, qa in found.items() if q not in dropped]


def encode(processor, image, question: str, answer: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """input_ids, pixel_values and a supervision mask (answer tokens + their <|im_end|>) for one single-turn chat,
    built with the same processor call as inference."""
    messages = chat_messages(question)
    start = len(processor(images=image, text=processor.apply_chat_template(messages, add_generation_prompt=True))["input_ids"][0])
    messages.append({"role": "assistant", "content": answer})
    full = processor(images=image, text=processor.apply_chat_template(messages), return_tensors="pt")
    ids = full["input_ids"][0]
    end = start + len(processor.tokenizer(answer + "<|im_end|>", add_special_tokens=False)["input_ids"])
    mask = torch.zeros(len(ids), dtype=torch.bool)
    mask[start:end] = True
    return ids, full["pixel_values"][0], mask


def common_prefix(a: torch.Tensor, b: torch.Tensor) -> int:
    """Length of the longest common prefix of two id sequences."""
    n = min(len(a), len(b))
    differ = (a[:n] != b[:n]).nonzero()
    return int(differ[0]) if len(differ) else n


def pack(processor, image, qas) -> dict[str, torch.Tensor]:
    """All of an image's single-turn chats in one row: their shared prefix (chat header + image tokens) once, then
    each chat's own tail. `segment` (0 = prefix, k = k-th tail) and `position_ids` let the attention mask make every
    tail see only the prefix and itself at the positions it has alone, so the row computes exactly the separate
    chats' answer losses at a fraction of the cost (the 64 visual tokens are most of a chat)."""
    chats = [encode(processor, image, question, answer) for question, answer in qas]
    first = chats[0][0]
    shared = min((common_prefix(first, ids) for ids, _, _ in chats[1:]), default=len(first))
    tails = [(ids[shared:], mask[shared:]) for ids, _, mask in chats]
    return {"input_ids": torch.cat([first[:shared]] + [ids for ids, _ in tails]),
            "supervised": torch.cat([chats[0][2][:shared]] + [mask for _, mask in tails]),
            "segment": torch.cat([torch.zeros(shared, dtype=torch.long)]
                                 + [torch.full((len(ids),), k + 1) for k, (ids, _) in enumerate(tails)]),
            "position_ids": torch.cat([torch.arange(shared)] + [torch.arange(shared, shared + len(ids)) for ids, _ in tails]),
            "pixel_values": chats[0][1]}


def collate(rows: list[dict[str, torch.Tensor]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad packed rows and build their [batch, 1, T, T] boolean attention mask: causal, and a tail token sees
    the prefix and its own tail only. Padding (segment −1) sees only padding, so no softmax row is empty."""
    length = max(len(row["input_ids"]) for row in rows)

    def padded(key, value):
        return torch.stack([F.pad(row[key], (0, length - len(row[key])), value=value) for row in rows])

    segment = padded("segment", -1)
    same = segment[:, :, None] == segment[:, None, :]
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    allowed = causal & (same | ((segment[:, None, :] == 0) & (segment[:, :, None] > 0)))
    return {"input_ids": padded("input_ids", pad_id), "position_ids": padded("position_ids", 0),
            "supervised": padded("supervised", False), "attention_mask": allowed[:, None],
            "pixel_values": torch.stack([row["pixel_values"] for row in rows])}


def packed_batch(processor, first_seed: int, images: int, per_image: int, kind_weights) -> dict[str, torch.Tensor]:
    """Scenes first_seed … first_seed+images−1, each with its questions packed into one row."""
    rows = [pack(processor, *image_questions(seed, per_image, kind_weights))
            for seed in range(first_seed, first_seed + images)]
    return collate(rows, processor.tokenizer.pad_token_id)


def answer_tokens(model, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(per-token cross-entropy, per-token argmax right, the row's hidden states) over supervised tokens. Logits
    are computed only at those positions (the LM head is the model's largest matrix)."""
    out = model.model(input_ids=batch["input_ids"], pixel_values=batch["pixel_values"],
                      attention_mask=batch["attention_mask"], position_ids=batch["position_ids"],
                      output_hidden_states=not torch.is_grad_enabled())
    targets = batch["supervised"][:, 1:]
    logits = model.lm_head(out.last_hidden_state[:, :-1][targets])
    gold = batch["input_ids"][:, 1:][targets]
    return F.cross_entropy(logits, gold, reduction="none"), logits.argmax(-1) == gold, out.hidden_states


def visual_sinks(hidden_states, image: torch.Tensor) -> torch.Tensor:
    """[batch, T] bool: image positions whose φ over the registry's sink dims exceeds its τ in some residual stream
    entering layers 2 … L−2 (VAR's default layers)."""
    backbone = get_backbone("smollm2-135m")
    layers = torch.stack(hidden_states)[2:len(hidden_states) - 2]
    return ((phi(layers, backbone.sink_dims) > backbone.tau) & image).any(0)


@torch.no_grad()
def monitor(model, processor, kind_weights) -> dict:
    """Training-time check on held-out scenes: first-answer-token accuracy of packed questions, and visual sinks per
    image (φ over the registry's sink dims > the registry's τ in VAR's default layers): what stage 2 must keep."""
    model.eval()
    batch = packed_batch(processor, HELDOUT_SEED_BASE + 500_000, MONITOR_SCENES, 6, kind_weights)
    _, right, hidden = answer_tokens(model, batch)
    starts = batch["supervised"][:, 1:] & ~batch["supervised"][:, :-1]  # first token of each answer
    first_right = right[starts[batch["supervised"][:, 1:]]].float().mean().item()
    sinks = visual_sinks(hidden, batch["input_ids"] == model.config.image_token_id).sum(-1)
    model.train()
    return {"first_token_accuracy": round(first_right, 3), "visual_sinks_per_image": sinks.tolist()}


def stage2(model, processor, args, checkpoint, state: dict) -> None:
    """LoRA adapters on every LM projection (and the projector if --projector-lr > 0) learn to answer through the
    LLM, loss on answers; continues from state["step"] with the optimiser state in state["optimiser"]."""
    projector = model.model.multi_modal_projector
    model.model.vision_tower.requires_grad_(False)
    projector.requires_grad_(args.projector_lr > 0)
    groups = [{"params": state["lora_params"], "base": args.lora_lr}]
    if args.projector_lr > 0:
        groups.append({"params": list(projector.parameters()), "base": args.projector_lr})
    opt = torch.optim.AdamW(groups, lr=args.lora_lr, weight_decay=0.0)
    if state.get("optimiser"):
        opt.load_state_dict(state["optimiser"])
    if args.monitor_every and state["step"] == 0:  # the LM as stage 1b leaves it: sinks should already be there
        state["monitor"].append({"step": 0, **monitor(model, processor, args.kind_weights)})
        print("monitor:", json.dumps(state["monitor"][-1]), flush=True)
    model.train()
    bar = tqdm(range(state["step"], args.stage2_steps), desc="stage 2 (LoRA through the LLM)", mininterval=10,
               initial=state["step"], total=args.stage2_steps)
    for step in bar:
        batch = packed_batch(processor, STAGE2_SEED_BASE + step * args.stage2_batch, args.stage2_batch,
                             args.questions_per_image, args.kind_weights)
        losses, right, _ = answer_tokens(model, batch)
        loss = losses.mean()
        for group in opt.param_groups:
            group["lr"] = group["base"] * lr_factor(step, args.stage2_steps, args.warmup)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], 1.0)
        opt.step()
        bar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{right.float().mean().item():.2f}", refresh=False)
        if step % 10 == 0:
            print(f"step {step} loss {loss.item():.4f} token_acc {right.float().mean().item():.3f}", flush=True)
        done = step + 1
        if args.monitor_every and (done % args.monitor_every == 0 or done == args.stage2_steps):
            state["monitor"].append({"step": done, **monitor(model, processor, args.kind_weights)})
            print("monitor:", json.dumps(state["monitor"][-1]), flush=True)
        if args.save_every and done % args.save_every == 0 or done == args.stage2_steps:
            checkpoint(done, opt)


def shipped_state(model) -> dict[str, torch.Tensor]:
    """What ships: tower + projector + the LM's adapters, float16."""
    state = {k: v for k, v in model.state_dict().items()
             if k.startswith(("model.vision_tower.", "model.multi_modal_projector."))}
    state.update(lora_state(model.model.language_model))
    return {k: v.detach().half().contiguous() for k, v in state.items()}


def train(args, report: dict) -> None:
    """Stages 1, 1b and 2, resumable: stage 1's result and stage 2's adapters + optimiser are checkpointed."""
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    model, processor = trainable_model()
    args.checkpoints.mkdir(parents=True, exist_ok=True)
    visual_file, stage2_file = args.checkpoints / "stage1.safetensors", args.checkpoints / "stage2.pt"
    if args.resume and visual_file.is_file():
        model.load_state_dict(load_file(visual_file), strict=False)
        report.update(json.loads((args.checkpoints / "stage1.json").read_text()))
        print(f"resumed stage 1 + 1b from {visual_file}", flush=True)
    else:
        if args.tower_from:
            tower = {k: v for k, v in load_file(args.tower_from / "stage1.safetensors").items()
                     if k.startswith("model.vision_tower.")}
            model.load_state_dict(tower, strict=False)
            earlier = json.loads((args.tower_from / "stage1.json").read_text())
            report.update(stage1_patch_accuracy=earlier["stage1_patch_accuracy"], stage1_seconds=earlier["stage1_seconds"],
                          stage1_from=str(args.tower_from))
            print(f"stage 1 tower from {args.tower_from}", flush=True)
        else:
            start = time.time()
            report["stage1_patch_accuracy"] = stage1(model, processor, args)
            report["stage1_seconds"] = round(time.time() - start)
        print("stage 1 held-out accuracy per object patch:", json.dumps(report["stage1_patch_accuracy"]), flush=True)
        torch.manual_seed(args.seed + 1)  # what follows draws the same numbers whether stage 1 ran or was taken
        start = time.time()
        report["stage1b_alignment"] = stage_align(model, processor, args)
        print("stage 1b held-out alignment:", json.dumps(report["stage1b_alignment"]), flush=True)
        report["stage1b_seconds"] = round(time.time() - start)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()
                   if k.startswith(("model.vision_tower.", "model.multi_modal_projector."))}, visual_file)
        (args.checkpoints / "stage1.json").write_text(json.dumps(
            {k: report[k] for k in ("stage1_patch_accuracy", "stage1_seconds", "stage1b_alignment", "stage1b_seconds")}))
    model.requires_grad_(False)
    state = {"step": 0, "seconds": 0.0, "monitor": [], "optimiser": None,
             "lora_params": add_lora(model.model.language_model, D.LORA_RANK, D.LORA_ALPHA, D.LORA_LAYERS)}
    if args.resume and stage2_file.is_file():
        saved = torch.load(stage2_file, weights_only=False)
        load_lora(model.model.language_model, saved["model"])
        model.model.multi_modal_projector.load_state_dict({k: v for k, v in saved["model"].items() if not k.startswith("lora.")})
        state.update({k: saved[k] for k in ("step", "seconds", "monitor", "optimiser")})
        report.setdefault("resumed_at_steps", []).append(state["step"])
        print(f"resumed stage 2 at step {state['step']} ({state['seconds']:.0f} s done)", flush=True)
    began = time.time() - state["seconds"]

    def checkpoint(done: int, opt) -> None:
        """Adapters (+ projector) and optimiser for --resume, and the shipped file + report so far."""
        state.update(step=done, seconds=time.time() - began)
        trainable = {**lora_state(model.model.language_model), **model.model.multi_modal_projector.state_dict()}
        torch.save({"model": trainable, "optimiser": opt.state_dict(),
                    **{k: state[k] for k in ("step", "seconds", "monitor")}}, stage2_file.with_suffix(".tmp"))
        stage2_file.with_suffix(".tmp").replace(stage2_file)
        report.update(stage2_steps_done=done, stage2_seconds=round(state["seconds"]), monitor=state["monitor"])
        report["train_seconds"] = report["stage1_seconds"] + report["stage1b_seconds"] + report["stage2_seconds"]
        save_file(shipped_state(model), args.weights, metadata={"seed": str(args.seed)})
        report_path(args).write_text(json.dumps(report, indent=1) + "\n")

    stage2(model, processor, args, checkpoint, state)
    print(f"saved {args.weights} ({args.weights.stat().st_size / 1e6:.1f} MB), {report['train_seconds']} s of training",
          flush=True)


def report_path(args) -> Path:
    """The training report, beside the weights it describes."""
    return args.weights.with_name(args.weights.stem + "_train.json")


def main(argv=None) -> None:
    args = parse_args(argv)
    args.weights = args.weights or (D.WEIGHTS if args.eval_only else args.checkpoints / "default_model.safetensors")
    args.weights.parent.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    print("config:", json.dumps(vars(args), default=str), flush=True)
    report_file = report_path(args)
    report = {"command": "python -m scripts.train_default_model " + " ".join(sys.argv[1:]),
              "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
              "vision_config": D.VISION_CONFIG,
              "lora": {"rank": D.LORA_RANK, "alpha": D.LORA_ALPHA, "layers": list(D.LORA_LAYERS)},
              "null_word": NULL_WORD, "torch": torch.__version__}
    if args.eval_only:
        report = json.loads(report_file.read_text())
    else:
        train(args, report)
    from var_core.eval.heldout import evaluate_default_model  # both scene families, batched greedy answers

    start = time.time()
    report["heldout_accuracy"] = evaluate_default_model(D.load_default_model(weights=args.weights), args.eval_questions, args.kind_weights)
    report["eval_seconds"] = round(time.time() - start)
    print("held-out accuracy:", json.dumps(report["heldout_accuracy"]), flush=True)
    report_file.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
