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


def test_conversations_are_deterministic_with_distinct_kinds():
    image, turns = T.conversation(123, max_turns=3, kind_weights=T.KIND_WEIGHTS)
    again_image, again = T.conversation(123, max_turns=3, kind_weights=T.KIND_WEIGHTS)
    assert turns == again and image.tobytes() == again_image.tobytes()
    assert 1 <= len(turns) <= 3 and len({question for question, _ in turns}) == len(turns)


def test_supervision_covers_exactly_the_answer_and_its_end_token(fresh_model):
    _, processor = fresh_model
    ids, _, mask = T.encode(processor, *T.conversation(7, max_turns=1, kind_weights=T.KIND_WEIGHTS))
    _, turns = T.conversation(7, max_turns=1, kind_weights=T.KIND_WEIGHTS)
    assert processor.tokenizer.decode(ids[mask]) == turns[0][1] + "<|im_end|>"


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
