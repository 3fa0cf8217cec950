"""`var_core.models.wrap`: a model the user loaded becomes a bundle that everything taking a bundle accepts."""

import json

import numpy as np
import pytest
from transformers import LlamaConfig, LlamaForCausalLM

from tests.tiny_llava import TINY_SINK_DIM, tiny_llava
from tests.tiny_models import noise_image, tiny_qwen2_vl
from var_core.analysis import analyze
from var_core.config import VARConfig
from var_core.eval.quick import run_quick
from var_core.explain import explain
from var_core.models import wrap
from var_core.registry import default_tau
from var_core.run import generate

PROMPT = "what colour is the square ?"


def test_a_wrapped_model_runs_generate_analyze_and_the_explanation_maps():
    own = tiny_llava(seed=4)  # stands for a model loaded with from_pretrained by the user
    bundle = wrap(own.model, own.processor, sink_dims=[TINY_SINK_DIM], tau=1.0, name="my-finetune")
    assert bundle.adapter.family == "llava" and bundle.name == "my-finetune"
    assert bundle.backbone.sink_dims == (TINY_SINK_DIM,) and bundle.backbone.tau == 1.0
    image, config = noise_image(40, 40), VARConfig(tau=1.0, select_heads=False)
    trace = generate(bundle, image, PROMPT, config, max_new_tokens=3)
    reference = generate(own, image, PROMPT, config, max_new_tokens=3)
    assert trace.answer == reference.answer and np.array_equal(trace.attn_to_visual, reference.attn_to_visual)
    assert trace.settings["sink_dims"] == [TINY_SINK_DIM] and trace.settings["tau"] == 1.0
    assert analyze(bundle, image, PROMPT, config, max_new_tokens=2).var.var_applied
    assert set(explain(bundle, image, PROMPT, config).maps) == {"raw attention", "relevancy", "relative attention",
                                                                "activation map"}
    rows, figures = run_quick("sinks", 2, bundle=bundle)  # the experiments (var_core.eval) take it too
    assert rows and figures


def test_family_comes_from_the_config_and_unknown_sink_dims_are_discovered_once(tmp_path, monkeypatch):
    monkeypatch.setenv("VAR_CACHE_DIR", str(tmp_path))
    own = tiny_qwen2_vl()
    bundle = wrap(own.model, own.processor, name="local/qwen-finetune")
    assert bundle.adapter.family == "qwen2_vl" and bundle.extra["backbone_discovered"]
    cached = json.loads(next((tmp_path / "sink_dims").glob("*.json")).read_text())
    assert list(bundle.backbone.sink_dims) == cached["sink_dims"] and not bundle.extra["sink_dims_from_cache"]
    assert bundle.backbone.tau == default_tau(own.text_config.hidden_size)
    again = wrap(own.model, own.processor, name="local/qwen-finetune", tau=1.5)
    assert again.extra["sink_dims_from_cache"] and again.backbone.sink_dims == bundle.backbone.sink_dims
    assert again.backbone.tau == 1.5
    assert generate(again, noise_image(64, 64), "what colour ?", max_new_tokens=2).settings["tau"] == 1.5


def test_an_unsupported_architecture_is_refused_naming_the_supported_ones():
    text_only = LlamaForCausalLM(LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32,
                                             num_hidden_layers=1, num_attention_heads=2))
    own = tiny_llava()
    with pytest.raises(ValueError, match=r"not a supported architecture.*llava.*qwen2_vl"):
        wrap(text_only, own.processor)
    with pytest.raises(ValueError, match="known families"):
        wrap(own.model, own.processor, family="mamba")
    with pytest.raises(ValueError, match="tau"):
        wrap(own.model, own.processor, sink_dims=[TINY_SINK_DIM], tau=100.0)
