"""scripts/train_default_model.py in miniature: options, data, and that training moves only tower + projector."""

import argparse

import pytest
import torch

from scripts import train_default_model as T


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


def changed_parameters(model, step) -> set[str]:
    """Names of the parameters that `step()` changed."""
    before = {name: value.clone() for name, value in model.state_dict().items()}
    step()
    return {name for name, value in model.state_dict().items() if not torch.equal(value, before[name])}


def no_checkpoint(steps):
    pytest.fail("no checkpoint was asked for")


def test_stages_train_tower_and_projector_only_and_stage2_freezes_the_tower_by_default(fresh_model, monkeypatch):
    model, processor = fresh_model
    monkeypatch.setattr(T, "PROBE_SCENES", 8)
    args = T.parse_args(["--stage1-steps", "2", "--align-steps", "2", "--stage2-steps", "2", "--stage1-batch", "4",
                         "--stage2-batch", "2", "--warmup", "1"])
    accuracy = {}
    changed = changed_parameters(model, lambda: accuracy.update(T.stage1(model, processor, args)))
    assert changed and all(name.startswith("model.vision_tower.") for name in changed)
    assert set(accuracy) == {"colour", "shape", "count"} and all(0 <= v <= 1 for v in accuracy.values())
    changed = changed_parameters(model, lambda: T.stage_align(model, processor, args))
    assert changed and all(name.startswith("model.multi_modal_projector.") for name in changed)
    changed = changed_parameters(model, lambda: T.stage2(model, processor, args, save=no_checkpoint))
    assert changed and all(name.startswith("model.multi_modal_projector.") for name in changed)
    args.tower_lr = 1e-4
    changed = changed_parameters(model, lambda: T.stage2(model, processor, args, save=no_checkpoint))
    assert any(name.startswith("model.vision_tower.") for name in changed)
    assert all(name.startswith(("model.vision_tower.", "model.multi_modal_projector.")) for name in changed)
