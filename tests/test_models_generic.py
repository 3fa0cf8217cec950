"""The generic path (var_core.models.generic) on a tiny PaliGemma, an architecture no family adapter knows: visual
tokens from the config's image token, layers from get_decoder(), the prompt from the processor's chat template, the
visual tokens drawn as a 1-D strip with a note; and the models it refuses."""

import pytest
import torch
from transformers import GptOssConfig

from tests.tiny_families import tiny_paligemma
from tests.tiny_models import (TINY_SINK_DIM, check_p_zero_hook_equals_eager, check_p_zero_hook_exact_through_generate,
                               noise_image, replaced_positions, tiny_internvl)
from var_core.config import VARConfig
from var_core.explain import explain
from var_core.hook import UnsupportedAttention
from var_core.models import wrap
from var_core.models.common import describe_seen
from var_core.models.generic import STRIP_NOTE
from var_core.run import generate

PROMPT = "what colour is the square ?"
TOKENS = 64  # 32-px image, 4-px patches


@pytest.fixture(scope="module")
def tiny():
    own = tiny_paligemma()
    return wrap(own.model, own.processor, sink_dims=[TINY_SINK_DIM], tau=1.0, name="local/paligemma")


@pytest.fixture(scope="module")
def prepared(tiny):
    return tiny.adapter.prepare(tiny, noise_image(32, 32), PROMPT)


def test_an_architecture_without_an_adapter_takes_the_generic_path(tiny):
    assert tiny.adapter.family == "generic" and tiny.extra["family"] == "generic"
    assert tiny.adapter.decoder_layers(tiny.model) is tiny.model.model.language_model.layers


def test_visual_positions_are_the_processors_image_tokens_drawn_as_a_strip_with_a_note(tiny, prepared):
    assert len(prepared.visual_positions) == tiny.processor.image_seq_length == TOKENS
    assert torch.equal(prepared.visual_positions, replaced_positions(tiny, prepared.inputs))
    assert prepared.grid == (1, TOKENS) and prepared.cells.ravel().tolist() == list(range(TOKENS))
    assert prepared.seen["grid_note"] == STRIP_NOTE and STRIP_NOTE in describe_seen(prepared.seen)


def test_hook_with_p_zero_equals_eager_at_prefill_and_through_decoding(tiny, prepared):
    check_p_zero_hook_equals_eager(tiny, prepared, "GemmaAttention")
    check_p_zero_hook_exact_through_generate(tiny, prepared)


def test_generate_traces_the_strip_and_the_explanation_maps_cover_it(tiny, prepared):
    trace = generate(tiny, noise_image(32, 32), PROMPT, config=VARConfig(p=0.5, tau=1.0), max_new_tokens=3)
    assert trace.grid == (1, TOKENS) and trace.attn_to_visual.shape[-1] == TOKENS
    assert trace.settings["seen"]["grid_note"] == STRIP_NOTE and len(trace.tokens) == trace.n_prompt + 3
    assert "labels" not in prepared.inputs  # PaliGemma's processor adds training targets; a forward would use them
    maps = explain(tiny, noise_image(32, 32), PROMPT, config=VARConfig(tau=1.0)).maps
    assert {name: value.shape for name, value in maps.items()} == dict.fromkeys(maps, (1, TOKENS))


def test_a_text_model_outside_the_attention_interface_is_refused(monkeypatch):
    own = tiny_paligemma()
    monkeypatch.setattr(type(own.model.get_decoder()), "_supports_attention_backend", False)
    with pytest.raises(ValueError, match="not the generic path: its text model does not attend through"):
        wrap(own.model, own.processor, sink_dims=[TINY_SINK_DIM])


def test_learned_attention_sinks_are_refused_naming_the_argument():
    """InternVL3.5-GPT-OSS: its GPT-OSS LM passes learned sinks (`s_aux`) the hook cannot reproduce."""
    tiny = tiny_internvl(text_config_class=GptOssConfig, head_dim=16, num_local_experts=4, num_experts_per_tok=2,
                         sliding_window=1024, layer_types=["sliding_attention", "full_attention"] * 2)
    with pytest.raises(UnsupportedAttention, match="s_aux"):
        generate(tiny, noise_image(64, 64), PROMPT, max_new_tokens=1)
