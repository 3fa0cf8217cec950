"""Which kernel each layer runs, capture limited to chosen layers, and attention arguments the hook refuses."""

import numpy as np
import pytest
import torch

import var_core.hook as hook
from var_core.config import VARConfig
from var_core.hook import RunState, UnsupportedAttention, var_attention_forward
from var_core.run import generate

PROMPT = "what colour is the square ?"
VAR = VARConfig(p=0.6, tau=1.0, rho=0.0, min_visual_mass=0.0, layers=(1, 2))


@pytest.fixture
def kernel_calls(monkeypatch):
    """Layer indices of every sdpa call and every explicit-attention call during a run."""
    calls = {"sdpa": [], "explicit": []}
    sdpa, explicit = hook.sdpa_attention_forward, hook._attend

    def counted_sdpa(module, *args, **kwargs):
        calls["sdpa"].append(module.layer_idx)
        return sdpa(module, *args, **kwargs)

    def counted_explicit(state, module, *args):
        calls["explicit"].append(module.layer_idx)
        return explicit(state, module, *args)
    monkeypatch.setattr(hook, "sdpa_attention_forward", counted_sdpa)
    monkeypatch.setattr(hook, "_attend", counted_explicit)
    return calls


def test_layers_without_var_or_capture_run_sdpa(tiny_bundle, noise_image, kernel_calls):
    full = generate(tiny_bundle, noise_image, PROMPT, VAR, max_new_tokens=3)
    kernel_calls["sdpa"].clear(), kernel_calls["explicit"].clear()
    part = generate(tiny_bundle, noise_image, PROMPT, VAR, max_new_tokens=3, capture_layers=[2, 3])
    assert set(kernel_calls["sdpa"]) == {0} and set(kernel_calls["explicit"]) == {1, 2, 3}  # VAR in 1, 2; capture 2, 3
    assert part.tokens == full.tokens and part.captured_layers == [2, 3]
    # equal up to float rounding: layer 0's sdpa and explicit kernels differ in the last bits
    for name in ("attn_to_visual", "attn_to_visual_raw", "visual_mass", "ratio"):
        np.testing.assert_allclose(getattr(part, name).astype(np.float32),
                                   getattr(full, name)[2:].astype(np.float32), rtol=2 ** -10, atol=1e-6, err_msg=name)
    np.testing.assert_array_equal(part.selected, full.selected[2:])
    assert part.attn_to_visual.nbytes * 2 == full.attn_to_visual.nbytes  # capture memory ∝ captured layers
    assert (part.attn_to_visual != part.attn_to_visual_raw).any()  # VAR acted in a captured layer
    assert part.layer_slot(3) == 1
    with pytest.raises(ValueError, match="layer 1 was not captured"):
        part.layer_slot(1)


def test_a_run_without_var_or_capture_is_all_sdpa(tiny_bundle, noise_image, kernel_calls):
    generate(tiny_bundle, noise_image, PROMPT, capture=False, max_new_tokens=2)
    assert kernel_calls["explicit"] == [] and set(kernel_calls["sdpa"]) == set(range(tiny_bundle.num_layers))


def test_bad_capture_layers_get_a_short_message(tiny_bundle, noise_image):
    with pytest.raises(ValueError, match=r"capture_layers: 4, 5, 6, 7, 8 … — choose among the model's layers 0 … 3"):
        generate(tiny_bundle, noise_image, PROMPT, capture_layers=range(10 ** 6))
    with pytest.raises(ValueError, match="capture_layers must be layer numbers"):
        generate(tiny_bundle, noise_image, PROMPT, capture_layers=["two"])


def hooked_call(bundle, **arguments):
    """One attention call of layer 0 under an active run, with extra interface arguments."""
    module = bundle.adapter.decoder_layers(bundle.model)[0].self_attn
    heads, kv_heads, dim = 4, 2, module.head_dim
    query, key = torch.randn(1, heads, 5, dim), torch.randn(1, kv_heads, 5, dim)
    state = RunState(visual_mask=torch.zeros(1, 5, dtype=torch.bool), query_start=5, sink_dims=(1,), tau=1.0,
                     selection=VARConfig(), capture=False, model_name="gpt-oss-like test model")
    token = hook._ACTIVE_RUN.set(state)
    try:
        return var_attention_forward(module, query, key, key.clone(), None, module.scaling, **arguments)
    finally:
        hook._ACTIVE_RUN.reset(token)


@pytest.mark.parametrize("name, value", [("s_aux", torch.zeros(4)), ("softcap", 50.0), ("alibi_slopes", torch.ones(4))])
def test_arguments_that_change_attention_are_refused_with_the_model_and_argument(tiny_bundle, name, value):
    with pytest.raises(UnsupportedAttention, match=rf"gpt-oss-like test model passes `{name}`"):
        hooked_call(tiny_bundle, **{name: value})


def test_bookkeeping_arguments_and_unused_ones_pass(tiny_bundle):
    output, _ = hooked_call(tiny_bundle, softcap=None, s_aux=None, sliding_window=4096, position_ids=torch.arange(5),
                            use_cache=True)
    assert output.shape == (1, 5, 4, tiny_bundle.adapter.decoder_layers(tiny_bundle.model)[0].self_attn.head_dim)


def test_a_real_softcapping_backbone_is_refused_before_any_answer(noise_image):
    """A LLaVA on a Gemma-2 text model (attention-logit soft-capping 50): the run stops with the reason."""
    from transformers import CLIPVisionConfig, Gemma2Config, LlavaConfig, LlavaForConditionalGeneration

    from tests.tiny_llava import IMAGE_SIZE, PATCH, tiny_processor
    from tests.tiny_models import TINY_BACKBONE
    from var_core.models.bundle import ModelBundle
    from var_core.models.llava import LlavaAdapter

    processor = tiny_processor()
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                       num_attention_heads=2, image_size=IMAGE_SIZE, patch_size=PATCH),
        text_config=Gemma2Config(vocab_size=len(processor.tokenizer), hidden_size=64, intermediate_size=128,
                                 num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                                 attn_logit_softcapping=50.0, pad_token_id=0, bos_token_id=1, eos_token_id=2),
        image_token_id=processor.tokenizer.convert_tokens_to_ids("<image>"), vision_feature_layer=-1)
    bundle = ModelBundle(model=LlavaForConditionalGeneration(config).eval(), processor=processor,
                         name="tiny-gemma2-llava", backbone=TINY_BACKBONE, adapter=LlavaAdapter())
    with pytest.raises(UnsupportedAttention, match="tiny-gemma2-llava passes `softcap`"):
        generate(bundle, noise_image, PROMPT, max_new_tokens=2)


def test_a_request_that_cannot_fit_is_refused_before_the_model_runs(tiny_bundle, noise_image, monkeypatch,
                                                                    kernel_calls):
    from var_core import memory
    from var_core.explain import explain

    monkeypatch.setattr(memory, "free_bytes", lambda device: 1000)
    with pytest.raises(memory.InsufficientMemory, match="This request needs about .* but cpu has 0.0 GB free"):
        generate(tiny_bundle, noise_image, PROMPT, VAR, max_new_tokens=3)
    with pytest.raises(memory.InsufficientMemory, match="or skip the explanation"):
        explain(tiny_bundle, noise_image, PROMPT)
    assert kernel_calls == {"sdpa": [], "explicit": []}


def test_a_partial_traces_summary_names_model_layers(tiny_bundle, noise_image):
    full = generate(tiny_bundle, noise_image, PROMPT, VAR, max_new_tokens=2)
    part = generate(tiny_bundle, noise_image, PROMPT, VAR, max_new_tokens=2, capture_layers=[2, 3])
    heads = part.summary()["heads"]
    assert heads and {head["layer"] for head in heads} <= {2, 3}
    assert [(h["layer"], h["head"]) for h in heads] == [(h["layer"], h["head"]) for h in full.summary()["heads"]
                                                        if h["layer"] in (2, 3)]
