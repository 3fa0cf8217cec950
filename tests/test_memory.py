"""var_core.memory: the estimate's parts by hand for 7B-shaped configs, against CPU measurements, and the refusal."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch.profiler import ProfilerActivity, profile
from torch.profiler._memory_profiler import Action
from transformers import (CLIPVisionConfig, LlamaConfig, LlamaForCausalLM, LlavaConfig, LlavaForConditionalGeneration,
                          Qwen2VLConfig, Qwen2VLForConditionalGeneration)

from tests.tiny_llava import tiny_llava, tiny_processor
from var_core import memory
from var_core.config import VARConfig
from var_core.explain.forward import answer_forward
from var_core.hook import RunState, attention_hook
from var_core.models.bundle import ModelBundle
from var_core.models.llava import LlavaAdapter
from var_core.registry import Backbone
from var_core.run import generate


def llava_7b_config() -> LlavaConfig:
    """LLaVA-1.5-7B's published shape: LLaMA-2-7B text (vocab 32,064), CLIP ViT-L/14 at 336 px."""
    return LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                                       num_attention_heads=16, image_size=336, patch_size=14, projection_dim=768),
        text_config=LlamaConfig(vocab_size=32064, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                                num_attention_heads=32, num_key_value_heads=32),
        image_token_id=32000, vision_feature_layer=-2, vision_feature_select_strategy="default")


def qwen2_vl_7b_config() -> Qwen2VLConfig:
    """Qwen2-VL-7B's published shape: 3584 wide, 28 layers, 28 heads, 4 KV heads, 675M-parameter vision tower."""
    return Qwen2VLConfig(
        vision_config=dict(depth=32, embed_dim=1280, hidden_size=3584, num_heads=16, mlp_ratio=4, patch_size=14,
                           spatial_merge_size=2, temporal_patch_size=2),
        text_config=dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                         num_attention_heads=28, num_key_value_heads=4, tie_word_embeddings=False),
        image_token_id=151655, video_token_id=151656, tie_word_embeddings=False)


def meta_shape(model_class, config) -> memory.ModelShape:
    """ModelShape of a bfloat16 model built on the meta device (no weights allocated)."""
    with torch.device("meta"):
        model = model_class(config).to(torch.bfloat16)
    return memory.model_shape(model)


@pytest.fixture(scope="module")
def llava_7b():
    return meta_shape(LlavaForConditionalGeneration, llava_7b_config())


@pytest.fixture(scope="module")
def qwen_7b():
    return meta_shape(Qwen2VLForConditionalGeneration, qwen2_vl_7b_config())


def timeline_peak(fn) -> int:
    """Peak bytes of CPU tensors created (and not yet freed) while `fn` runs, from the profiler's memory timeline."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True) as prof:
        fn()
    current = peak = 0
    for _, action, _, size in prof._memory_profile().timeline:
        current += size if action == Action.CREATE else -size if action == Action.DESTROY else 0
        peak = max(peak, current)
    return peak


def test_llava_7b_shape_and_weights(llava_7b):
    # LLaMA-2-7B with 32,064 tokens: 2·V·D + L·(4·D² + 3·D·I + 2·D) + D = 6,739,464,192; hub card: 7.06B in all
    assert (llava_7b.layers, llava_7b.heads, llava_7b.kv_heads, llava_7b.head_dim) == (32, 32, 32, 128)
    assert llava_7b.dtype_bytes == 2
    assert llava_7b.weight_bytes / 2 == pytest.approx(7.06e9, rel=0.005)


def test_qwen2_vl_7b_shape_and_weights(qwen_7b):
    assert (qwen_7b.layers, qwen_7b.heads, qwen_7b.kv_heads, qwen_7b.head_dim) == (28, 28, 4, 128)
    assert qwen_7b.weight_bytes / 2 == pytest.approx(8.29e9, rel=0.005)  # hub card: 8.29B parameters


def test_llava_7b_parts_by_hand(llava_7b):
    """T = 620 (576 visual), 64 new tokens, 32 captured layers with VAR, explanation."""
    estimate = memory.estimate(llava_7b, 620, 576, max_new_tokens=64, captured_layers=32, var=True, explanation=True)
    assert estimate.kv_cache == 2 * 32 * 684 * 32 * 128 * 2 == 358_612_992
    assert estimate.activations == 620 * (6 * 4096 + 3 * 11008) * 2 == 71_424_000
    # 8·32·620² + 2·620² + 16·32·620·128
    assert estimate.scores == 98_406_400 + 768_800 + 40_632_320
    # Q = 44 + 64 = 108 rows: 32·32·108·(2·576·2 + 24) + 2·32·32·108·2·576
    assert estimate.trace == 110_592 * 2_328 + 2 * 110_592 * 1_152 == 512_262_144
    # saved 32·620·((4·4096 + 2·4096 + 3·11008)·2 + 8·4096) > Ā 4·32·620²; + 16·32·620² + 2·32,064·2
    assert estimate.explanation == 2_935_685_120 + 196_812_800 + 128_256
    assert estimate.total == estimate.weights + estimate.kv_cache + estimate.explanation


def test_qwen2_vl_7b_at_5300_visual_tokens(qwen_7b):
    """A 2048² photo: 5,300 visual tokens in a 5,400-token prompt; the scores dominate Analyze (METHOD.md §5)."""
    estimate = memory.estimate(qwen_7b, 5400, 5300, max_new_tokens=128, captured_layers=28, var=True)
    assert estimate.kv_cache == 2 * 28 * 5528 * 4 * 128 * 2 == 316_997_632
    assert estimate.scores == 8 * 28 * 5400**2 + 2 * 5400**2 + 16 * 28 * 5400 * 128 == 6_899_817_600
    cells = 28 * 28 * 228
    assert estimate.trace == cells * (2 * 5300 * 2 + 24) + 2 * cells * 2 * 5300 == 7_583_374_848
    assert estimate.explanation == 0
    assert estimate.total == estimate.weights + estimate.kv_cache + estimate.trace + estimate.scores
    few = memory.estimate(qwen_7b, 5400, 5300, max_new_tokens=128, captured_layers=4, var=True)
    assert few.trace * 7 == estimate.trace  # capture memory ∝ the captured layers


def test_scores_estimate_matches_one_hooked_layer_call():
    """One explicit-attention layer call (H = 8, T = 1024, float32) of the hook: measured peak within 10 % of
    the scores part plus the embeddings entering the layer."""
    heads, tokens, hidden = 8, 1024, 512
    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=hidden, intermediate_size=1376,
                                         num_hidden_layers=1, num_attention_heads=heads, num_key_value_heads=2)).eval()
    ids = torch.randint(0, 64, (1, tokens))
    visual = torch.zeros(1, tokens, dtype=torch.bool)
    visual[0, 5:900] = True
    state = RunState(visual_mask=visual, query_start=900, sink_dims=(5,), tau=1e9, selection=VARConfig(),
                     capture=False, observe=lambda layer, weights: None)  # the observer makes the layer explicit

    def layer_call():
        with torch.inference_mode(), attention_hook(model, model.model.layers, state):
            model.set_attn_implementation("var_eager")  # a plain LM has no text_config for the hook to switch
            model.model(input_ids=ids, use_cache=False)

    layer_call()
    measured = timeline_peak(layer_call)
    estimate = memory.estimate(memory.model_shape(model), tokens, 895)
    assert estimate.scores > estimate.activations
    assert estimate.scores + tokens * hidden * 4 == pytest.approx(measured, rel=0.10)


@pytest.mark.parametrize("layers", [2, 6])
def test_explanation_estimate_bounds_a_measured_backward(layers):
    """Relevancy's forward and backward (4 heads, 576 visual tokens): the estimate is at or above the measured peak
    and within 20 % of it, at either depth."""
    processor = tiny_processor(96, 4)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                       num_attention_heads=2, image_size=96, patch_size=4),
        text_config=LlamaConfig(vocab_size=len(processor.tokenizer), hidden_size=256, intermediate_size=688,
                                num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                                pad_token_id=0, bos_token_id=1, eos_token_id=2),
        image_token_id=processor.tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default", vision_feature_layer=-1)
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config).eval().requires_grad_(False)
    bundle = ModelBundle(model=model, processor=processor, name="wide-tiny-llava",
                         backbone=Backbone("tiny", 256, (5,), 2.0, "random"), adapter=LlavaAdapter())
    image = Image.fromarray((np.random.RandomState(0).rand(96, 96, 3) * 255).astype("uint8"))
    prompt = "what colour is the square ?"
    measured = timeline_peak(lambda: answer_forward(bundle, image, prompt, gradients=True))
    tokens = bundle.adapter.prepare(bundle, image, prompt).inputs["input_ids"].shape[1]
    estimate = memory.estimate(memory.model_shape(model), tokens, 576, explanation=True)
    assert measured <= estimate.kv_cache + estimate.explanation <= 1.2 * measured


def test_trace_bytes_is_what_a_trace_holds():
    bundle = tiny_llava(layers=4)
    image = Image.fromarray((np.random.RandomState(1).rand(32, 32, 3) * 255).astype("uint8"))
    trace = generate(bundle, image, "what colour is the square ?", config=VARConfig(tau=1.0), max_new_tokens=3,
                     capture_layers=[1, 3])
    arrays = (trace.attn_to_visual, trace.attn_to_visual_raw, trace.visual_mass, trace.sink_mass, trace.ratio,
              trace.selected)
    held = sum(array.nbytes for array in arrays)
    assert held == memory.trace_bytes(bundle.num_heads, len(trace.query_positions), len(trace.visual_positions),
                                      2, var=True)


def test_check_fits_refuses_with_the_numbers(qwen_7b, monkeypatch):
    estimate = memory.estimate(qwen_7b, 5400, 5300, max_new_tokens=128, captured_layers=28, var=True)
    monkeypatch.setattr(memory, "free_bytes", lambda device: 12e9)
    with pytest.raises(memory.InsufficientMemory) as refused:
        memory.check_fits(estimate, "cuda:0")
    message = str(refused.value)
    assert "about 31.4 GB (weights 16.6, trace 7.6, attention scores 6.9, KV cache 0.3)" in message
    assert "14.8 GB of it beyond the loaded weights" in message
    assert "cuda:0 has 12.0 GB free" in message and "5,300 tokens" in message and "now 28 of 28" in message
    assert isinstance(refused.value, ValueError)


def test_describe_names_the_explanation_when_it_is_the_larger_phase(llava_7b):
    estimate = memory.estimate(llava_7b, 620, 576, max_new_tokens=64, captured_layers=32, var=True, explanation=True)
    assert memory.describe(estimate) == "about 17.6 GB (weights 14.1, explanation 3.1, KV cache 0.4)"


def test_check_fits_passes_when_the_rest_fits(qwen_7b, monkeypatch):
    estimate = memory.estimate(qwen_7b, 1300, 1200, max_new_tokens=64, captured_layers=4, var=True)
    monkeypatch.setattr(memory, "free_bytes", lambda device: estimate.total - estimate.weights)
    memory.check_fits(estimate, "cuda:0")
    with pytest.raises(memory.InsufficientMemory):
        memory.check_fits(estimate, "cuda:0", weights_loaded=False)


def test_free_bytes_on_the_cpu_is_available_memory():
    assert 0 < memory.free_bytes("cpu") <= __import__("psutil").virtual_memory().total


@pytest.mark.parametrize("model", ["llava_7b", "qwen_7b"])
def test_the_default_budget_keeps_a_7b_analyze_and_explanation_within_24_gb(model, request):
    """At the default visual-token budget (var_core.budget), with the app's default capture for deep models (every
    4th layer plus the last) and 64 new tokens, Analyze (baseline + VAR) and the explanation fit a 24 GB GPU."""
    from var_core.budget import DEFAULT_VISUAL_TOKEN_BUDGET

    shape = request.getfixturevalue(model)
    visual = 576 if model == "llava_7b" else DEFAULT_VISUAL_TOKEN_BUDGET
    captured = len(range(0, shape.layers, 4)) + 1
    needs = memory.estimate(shape, visual + 60, visual, max_new_tokens=64, captured_layers=captured, var=True,
                            explanation=True)
    assert needs.total <= 24e9, memory.describe(needs)
