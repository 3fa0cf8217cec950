"""The attention hook on a real (tiny, random) LlavaForConditionalGeneration: exactness, VAR effect, scoping."""

import pytest
import torch

from var_core.config import VARConfig
from var_core.hook import _ACTIVE_RUN, ATTENTION_NAME, RunState, _record_sinks, attention_hook

PROMPT = "what colour is the square ?"


def eager_logits(bundle, inputs):
    with torch.no_grad():
        return bundle.model(**inputs).logits


def hooked_logits(bundle, inputs, prepared, var=None, tau=2.0):
    visual = torch.zeros_like(inputs["input_ids"], dtype=torch.bool)
    visual[0, prepared.visual_positions] = True
    state = RunState(visual_mask=visual, query_start=int(prepared.visual_positions.max()) + 1,
                     sink_dims=bundle.backbone.sink_dims, tau=tau, selection=var or VARConfig(), var=var,
                     var_layers=frozenset(range(bundle.num_layers)) if var else frozenset())
    with torch.no_grad(), attention_hook(bundle.model, bundle.adapter.decoder_layers(bundle.model), state):
        return bundle.model(**inputs).logits, state


@pytest.fixture(scope="module")
def prepared(tiny_bundle, noise_image):
    return tiny_bundle.adapter.prepare(tiny_bundle, noise_image, PROMPT)


def test_hook_with_p_zero_equals_eager(tiny_bundle, prepared):
    tiny_bundle.model.set_attn_implementation("eager")
    reference = eager_logits(tiny_bundle, prepared.inputs)
    logits, state = hooked_logits(tiny_bundle, prepared.inputs, prepared, var=VARConfig(p=0.0))
    assert torch.allclose(logits, reference, atol=1e-5)
    assert any(mask[prepared.visual_positions].any() for mask in (m[0] for m in state.sink_masks.values()))


def test_hook_equals_sdpa_too_so_the_causal_mask_is_applied(tiny_bundle, prepared):
    tiny_bundle.model.set_attn_implementation("sdpa")
    reference = eager_logits(tiny_bundle, prepared.inputs)
    logits, _ = hooked_logits(tiny_bundle, prepared.inputs, prepared)
    assert torch.allclose(logits, reference, atol=1e-5)


def test_var_changes_logits_only_after_the_image_and_only_with_sinks(tiny_bundle, prepared):
    tiny_bundle.model.set_attn_implementation("eager")
    reference = eager_logits(tiny_bundle, prepared.inputs)
    start = int(prepared.visual_positions.max()) + 1
    no_sinks, state = hooked_logits(tiny_bundle, prepared.inputs, prepared, var=VARConfig(p=0.8), tau=7.9)
    assert not any(mask.any() for mask in state.sink_masks.values())
    assert torch.allclose(no_sinks, reference, atol=1e-5)
    changed, state = hooked_logits(tiny_bundle, prepared.inputs, prepared, var=VARConfig(p=0.8), tau=1.0)
    assert any(mask[0, prepared.visual_positions].any() for mask in state.sink_masks.values())
    assert torch.allclose(changed[:, :start], reference[:, :start], atol=1e-5)
    assert not torch.allclose(changed[:, start:], reference[:, start:], atol=1e-4)


def test_hook_is_removed_and_state_reset_after_the_run(tiny_bundle, prepared):
    tiny_bundle.model.set_attn_implementation("eager")
    hooked_logits(tiny_bundle, prepared.inputs, prepared, var=VARConfig(p=0.5))
    assert _ACTIVE_RUN.get() is None
    assert tiny_bundle.text_config._attn_implementation == "eager"
    layers = tiny_bundle.adapter.decoder_layers(tiny_bundle.model)
    assert all(not layer._forward_pre_hooks for layer in layers)


def test_hook_restores_previous_implementation_when_the_run_fails(tiny_bundle, prepared):
    tiny_bundle.model.set_attn_implementation("sdpa")
    visual = torch.zeros_like(prepared.inputs["input_ids"], dtype=torch.bool)
    state = RunState(visual_mask=visual, query_start=0, sink_dims=(5,), tau=2.0, selection=VARConfig())
    with pytest.raises(RuntimeError, match="boom"):
        with attention_hook(tiny_bundle.model, tiny_bundle.adapter.decoder_layers(tiny_bundle.model), state):
            assert tiny_bundle.text_config._attn_implementation == ATTENTION_NAME
            raise RuntimeError("boom")
    assert tiny_bundle.text_config._attn_implementation == "sdpa"
    assert _ACTIVE_RUN.get() is None


def test_sinks_are_detected_from_the_residual_stream_entering_each_layer(tiny_bundle, prepared):
    with torch.no_grad():
        hidden = tiny_bundle.model(**prepared.inputs, output_hidden_states=True).hidden_states
    _, state = hooked_logits(tiny_bundle, prepared.inputs, prepared)
    from var_core.sink import phi
    for layer in range(tiny_bundle.num_layers):
        assert torch.allclose(state.phi[layer], phi(hidden[layer], tiny_bundle.backbone.sink_dims), atol=1e-5)


def test_profile_keeps_the_hidden_state_of_the_first_layer_with_the_largest_visual_phi():
    # 4 tokens, token 2 is the only visual one; sink dim 0: φ = |x[0]| / RMS(x) with x = [a, 1, 1, 1]
    visual = torch.tensor([[False, False, True, False]])
    state = RunState(visual_mask=visual, query_start=3, sink_dims=(0,), tau=1.5, selection=VARConfig(),
                     grid_positions=torch.tensor([2]))

    def hidden(visual_value: float, bos_value: float = 9.0) -> torch.Tensor:
        x = torch.ones(1, 4, 4)
        x[0, 0, 0], x[0, 2, 0] = bos_value, visual_value
        return x

    layers = [hidden(1.0), hidden(3.0), hidden(3.0, bos_value=1.0), hidden(2.0, bos_value=20.0)]  # φ 1, √3, √3, 1.51
    for layer, x in enumerate(layers):
        _record_sinks(state, layer, x)
    assert state.profile_layer == 1  # the largest visual φ first appears at layer 1; the tie at layer 2 keeps it
    assert torch.equal(state.profile_hidden, layers[1]) and state.profile_phi == pytest.approx(3 ** 0.5)
