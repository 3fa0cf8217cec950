"""scripts/train_default_model.py in miniature: options, packed data, what each stage trains, checkpoints and --resume."""

import argparse
import json

import pytest
import torch
from safetensors.torch import load_file

from scripts import train_default_model as T
from var_core.models import default as D
from var_core.models.lora import PREFIX, PROJECTIONS
from var_core.scenes import Scene, Shape, object_coverage, render_with_owners


@pytest.fixture(scope="module")
def fresh_model():
    return T.trainable_model()


def test_kind_weights_override_only_the_named_kinds():
    weights = T.parse_kind_weights("colour=2,yesno=2.5")
    assert weights == {**T.KIND_WEIGHTS, "colour": 2.0, "yesno": 2.5}
    with pytest.raises(argparse.ArgumentTypeError, match="unknown question kind 'foo'"):
        T.parse_kind_weights("foo=1")


def test_image_questions_are_deterministic_distinct_and_balanced_on_yes_no():
    image, qas = T.image_questions(123, per_image=8, kind_weights=T.KIND_WEIGHTS)
    again_image, again = T.image_questions(123, per_image=8, kind_weights=T.KIND_WEIGHTS)
    assert qas == again and image.tobytes() == again_image.tobytes()
    for seed in range(40):
        _, qas = T.image_questions(seed, per_image=8, kind_weights={**T.KIND_WEIGHTS, "yesno": 5.0})
        questions = [question for question, _ in qas]
        assert 1 <= len(qas) <= 8 and len(set(questions)) == len(questions)
        answers = [answer for question, answer in qas if question.startswith("Is there")]
        assert answers.count("yes") == answers.count("no")


def word(model, processor, text):
    return model.get_input_embeddings().weight[processor.tokenizer(text, add_special_tokens=False)["input_ids"]].mean(0)


def test_background_patches_are_taught_the_null_word_objects_their_colour_shape_side_and_count(fresh_model):
    model, processor = fresh_model
    targets = T.word_targets(model, processor)
    labels = {"colour": torch.tensor([0, 1 + list(T.COLOURS).index("red")]),
              "shape": torch.tensor([0, 1 + T.SHAPES.index("square")]), "side": torch.tensor([2, 1 + T.SIDES.index("left")]),
              "count": torch.tensor([3, 3])}  # patch 0: background (its side and count labels are ignored)
    patches = T.patch_targets(targets, labels)
    assert T.NULL_WORD == "<|endoftext|>" and torch.equal(patches[0], model.get_input_embeddings().weight[0])
    torch.testing.assert_close(patches[1], sum(word(model, processor, w) for w in (" red", " square", " left", " three")) / 4)


def test_patch_labels_give_every_painted_patch_its_object():
    """A filled square and an outlined circle: every patch with a painted pixel (object_coverage > 0) is the shape's
    that paints most of it, with its colour, kind and side; every patch knows the count; the centres are marked."""
    scene = Scene(seed=5, background="plain", shapes=(Shape("square", "red", 30, 40, 20),
                                                      Shape("circle", "blue", 92, 96, 28, outline=True)))
    labels = T.patch_labels(scene, render_with_owners(scene)[1])
    painted = object_coverage(scene, T.GRID) > 0
    assert torch.equal(labels["shape"] > 0, torch.from_numpy(painted))
    red = labels["colour"] == 1 + list(T.COLOURS).index("red")
    assert torch.equal(red, labels["side"] == 1 + T.SIDES.index("left")) and red.sum() >= 6
    blue = labels["colour"] == 1 + list(T.COLOURS).index("blue")
    assert torch.equal(blue, labels["shape"] == 1 + T.SHAPES.index("circle"))
    assert torch.equal(blue, labels["side"] == 1 + T.SIDES.index("bottom")) and blue.sum() > red.sum()
    assert not labels["shape"][6 * T.GRID + 5] and labels["centre"].nonzero().flatten().tolist() == [2 * 8 + 1, 6 * 8 + 5]
    assert labels["count"].tolist() == [2] * T.GRID ** 2  # the outlined circle's empty inside is background


def test_supervision_covers_exactly_the_answer_and_its_end_token(fresh_model):
    _, processor = fresh_model
    image, qas = T.image_questions(7, per_image=1, kind_weights=T.KIND_WEIGHTS)
    ids, _, mask = T.encode(processor, image, *qas[0])
    assert processor.tokenizer.decode(ids[mask]) == qas[0][1] + "<|im_end|>"


def test_collate_mask_lets_each_tail_see_the_prefix_and_itself_only():
    row = {"input_ids": torch.arange(5), "supervised": torch.zeros(5, dtype=torch.bool),
           "segment": torch.tensor([0, 0, 1, 2, 2]), "position_ids": torch.tensor([0, 1, 2, 2, 3]),
           "pixel_values": torch.zeros(3, 2, 2)}
    short = {key: value[:3] if key != "pixel_values" else value for key, value in row.items()}
    batch = T.collate([row, short], pad_id=-7)
    expected = torch.tensor([[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [1, 1, 0, 1, 0], [1, 1, 0, 1, 1]])
    assert torch.equal(batch["attention_mask"][0, 0], expected.bool())
    assert batch["input_ids"][1].tolist() == [0, 1, 2, -7, -7] and batch["position_ids"][1].tolist() == [0, 1, 2, 0, 0]
    assert batch["attention_mask"][1, 0, 3].tolist() == [False, False, False, True, False]  # padding sees padding


def test_packed_row_computes_exactly_the_separate_chats_losses(fresh_model):
    model, processor = fresh_model
    image, qas = T.image_questions(4, per_image=4, kind_weights=T.KIND_WEIGHTS)
    assert len(qas) >= 3
    pad = processor.tokenizer.pad_token_id

    def single(ids, pixels, mask):
        return {"input_ids": ids, "supervised": mask, "segment": torch.zeros(len(ids), dtype=torch.long),
                "position_ids": torch.arange(len(ids)), "pixel_values": pixels}

    with torch.no_grad():
        packed = T.answer_tokens(model, T.collate([T.pack(processor, image, qas)], pad))[0]
        separate = torch.cat([T.answer_tokens(model, T.collate([single(*T.encode(processor, image, *qa))], pad))[0]
                              for qa in qas])
    assert len(packed) == len(separate) > len(qas)
    torch.testing.assert_close(packed, separate, atol=1e-4, rtol=1e-4)


def test_training_end_to_end_in_miniature_then_resume(tmp_path, monkeypatch):
    """Stage 1 moves the tower only, 1b the projector only, stage 2 the LoRA adapters only; the shipped file holds
    tower + projector + adapters, the report the monitor and wall times; --resume continues at the saved step."""
    monkeypatch.setattr(T, "PROBE_SCENES", 8)
    monkeypatch.setattr(T, "MONITOR_SCENES", 2)
    monkeypatch.setattr(D, "WEIGHTS", tmp_path / "weights.safetensors")
    argv = ["--stage1-steps", "2", "--align-steps", "2", "--stage1-batch", "4", "--stage2-batch", "1",
            "--questions-per-image", "2", "--warmup", "1", "--save-every", "1", "--monitor-every", "2",
            "--checkpoints", str(tmp_path / "ck"), "--weights", str(D.WEIGHTS)]
    seen = {}
    real_stage2 = T.stage2

    def spy(model, processor, args, checkpoint, state):
        seen["visual"] = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("model.language_model")}
        seen["lm"] = {k: v.clone() for k, v in model.model.language_model.state_dict().items() if not k.endswith((".A", ".B"))}
        real_stage2(model, processor, args, checkpoint, state)
        seen["model"] = model

    real_align = T.stage_align

    def align_spy(model, processor, args):
        before = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("model.language_model")}
        result = real_align(model, processor, args)
        moved = {k for k, v in model.state_dict().items() if k in before and not torch.equal(v, before[k])}
        seen["align_moved"] = moved
        return result

    monkeypatch.setattr(T, "stage2", spy)
    monkeypatch.setattr(T, "stage_align", align_spy)
    report = {}
    T.train(T.parse_args(argv + ["--stage2-steps", "2"]), report)
    model = seen["model"]
    assert seen["align_moved"] and all("multi_modal_projector" in k for k in seen["align_moved"])  # 1b trains it
    assert set(report["stage1b_alignment"]) == {f"object_{kind}_nearest_right" for kind in ("colour", "shape", "side", "count")} | {
        "background_nearer_null_than_any_object_target", "background_cosine_to_null"}
    assert {"colour", "shape", "side", "count", "count_per_image", "centre_found"} <= set(report["stage1_patch_accuracy"])
    assert report["stage2_steps_done"] == 2 and [m["step"] for m in report["monitor"]] == [0, 2]
    assert {"first_token_accuracy", "visual_sinks_per_image"} <= set(report["monitor"][0])
    assert all(k in report for k in ("stage1_seconds", "stage1b_seconds", "stage2_seconds", "train_seconds"))
    for name, value in model.state_dict().items():
        if name in seen["visual"]:
            assert torch.equal(value, seen["visual"][name]), f"stage 2 moved {name}"
    for name, value in model.model.language_model.state_dict().items():
        if name in seen["lm"]:
            assert torch.equal(value, seen["lm"][name]), f"stage 2 moved the base weight {name}"
    shipped = load_file(D.WEIGHTS)
    adapters = [k for k in shipped if k.startswith(PREFIX)]
    assert len(adapters) == 2 * len(D.LORA_LAYERS) * len(PROJECTIONS) and any(shipped[k].abs().sum() > 0 for k in adapters if k.endswith(".B"))
    assert any(k.startswith("model.vision_tower.") for k in shipped) and any("multi_modal_projector" in k for k in shipped)
    assert json.loads(D.WEIGHTS.with_name("weights_train.json").read_text())["stage2_steps_done"] == 2

    resumed = {}
    T.train(T.parse_args(argv + ["--stage2-steps", "3", "--resume"]), resumed)
    assert resumed["resumed_at_steps"] == [2] and resumed["stage2_steps_done"] == 3
    assert resumed["stage1_patch_accuracy"] == report["stage1_patch_accuracy"]  # stage 1 was not rerun
    for name, value in load_file(D.WEIGHTS).items():
        if not name.startswith(PREFIX):
            assert torch.equal(value, shipped[name]), name
