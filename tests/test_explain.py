"""Explanation maps (var_core.explain) against slow references on tiny LLaVAs built from configs."""

import numpy as np
import pytest
import torch

from tests.tiny_llava import WORDS, tiny_llava
from var_core.config import VARConfig
from var_core.explain import METHODS, activation_map, explain, relative_attention, relevancy
from var_core.explain.forward import answer_forward
from var_core.explain.rules import relative
from var_core.hook import attention_hook
from var_core.run import generate, prepare_run

PROMPT = "what colour is the square ?"
EVERY_HEAD = VARConfig(tau=1.0, select_heads=False, p=0.8)  # acts on the tiny model's answer row in every layer


@pytest.fixture(scope="module")
def bundle():
    return tiny_llava(seed=3)


def chefer_by_loops(attentions, gradients, row, columns, heads_first=False):
    """The rule written out: R = I; per layer Ā = (1/H) Σ_h (∇A_h ⊙ A_h)⁺; R ← R + Ā·R; R[row, columns] normalised.
    heads_first=True is the classic mistake (mean of ∇A times mean of A, clipped), kept to show the test sees it."""
    size = attentions[0].shape[-1]
    rule = torch.eye(size, dtype=torch.float64)
    for attention, gradient in zip(attentions, gradients):
        attention, gradient = attention[0].double(), gradient[0].double()
        heads = attention.shape[0]
        if heads_first:
            layer_bar = (gradient.mean(0) * attention.mean(0)).clamp(min=0)
        else:
            layer_bar = torch.zeros(size, size, dtype=torch.float64)
            for head in range(heads):
                layer_bar += (gradient[head] * attention[head]).clamp(min=0) / heads
        rule = rule + layer_bar @ rule
    values = rule[row, columns]
    return (values / values.sum()).numpy()


def hook_attentions_with_grads(bundle, image, prompt, config):
    """Every layer's attention as the model used it (after VAR), and the gradient of the greedy answer token's
    logit with respect to it, by retain_grad on the full tensors (the memory-hungry way)."""
    prepared, state = prepare_run(bundle, image, prompt, config, capture=False)
    kept = {}

    def observe(layer, weights):
        weights.retain_grad()
        kept[layer] = weights

    state.observe = observe
    bundle.model.zero_grad(set_to_none=True)
    with attention_hook(bundle.model, bundle.adapter.decoder_layers(bundle.model), state), torch.enable_grad():
        logits = bundle.model(**prepared.inputs).logits[0, -1]
        logits[logits.argmax()].backward()
    attentions = [kept[layer].detach() for layer in range(bundle.num_layers)]
    return attentions, [kept[layer].grad for layer in range(bundle.num_layers)], prepared


def test_relevancy_equals_the_rule_written_with_loops_over_transformers_own_attentions(bundle, noise_image):
    """Baseline reference independent of our hook: transformers' eager attention, output_attentions, retain_grad."""
    prepared = bundle.adapter.prepare(bundle, noise_image, PROMPT)
    previous = bundle.model.config.get_text_config()._attn_implementation
    bundle.model.set_attn_implementation({"text_config": "eager"})
    try:
        with torch.enable_grad():
            output = bundle.model(**prepared.inputs, output_attentions=True)
            for attention in output.attentions:
                attention.retain_grad()
            logits = output.logits[0, -1]
            logits[logits.argmax()].backward()
    finally:
        bundle.model.set_attn_implementation({"text_config": previous})
        bundle.model.zero_grad(set_to_none=True)
    attentions = [attention.detach() for attention in output.attentions]
    gradients = [attention.grad for attention in output.attentions]
    columns = prepared.visual_positions.numpy()
    expected = chefer_by_loops(attentions, gradients, -1, columns)
    ours = relevancy(bundle, noise_image, PROMPT).ravel()
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-6)
    wrong = chefer_by_loops(attentions, gradients, -1, columns, heads_first=True)
    assert np.abs(wrong - expected).max() > 1e-3  # averaging heads first is a different map: the test can tell


def test_relevancy_with_var_takes_the_gradient_of_the_redistributed_attention(bundle, noise_image):
    attentions, gradients, prepared = hook_attentions_with_grads(bundle, noise_image, PROMPT, EVERY_HEAD)
    columns = prepared.visual_positions.numpy()
    expected = chefer_by_loops(attentions, gradients, -1, columns)
    with_var = relevancy(bundle, noise_image, PROMPT, EVERY_HEAD).ravel()
    np.testing.assert_allclose(with_var, expected, rtol=1e-4, atol=1e-6)
    baseline = relevancy(bundle, noise_image, PROMPT).ravel()
    assert np.abs(with_var - baseline).max() > 1e-3  # VAR acted: the maps differ
    assert np.isfinite(with_var).all()


@pytest.mark.parametrize("gradients", [False, True])
def test_the_maps_read_the_attention_after_var_as_the_trace_records_it(bundle, noise_image, gradients):
    """With gradients VAR runs out of place (autograd keeps softmax's output), without it in place: both give the
    attention `generate` records as used, not the one before VAR."""
    trace = generate(bundle, noise_image, PROMPT, EVERY_HEAD, max_new_tokens=1)
    row = trace.settings["prompt_queries"] - 1
    forward = answer_forward(bundle, noise_image, PROMPT, EVERY_HEAD, gradients=gradients)
    captured = trace.attn_to_visual[:, :, row].astype(np.float32).mean(1)  # stored in float16
    np.testing.assert_allclose(forward.attention.numpy(), captured, rtol=1e-3, atol=1e-6)
    assert np.abs(forward.attention.numpy() - trace.attn_to_visual_raw[:, :, row].mean(1)).max() > 1e-3


def test_when_the_answer_can_read_one_visual_token_only_that_token_wins(noise_image):
    """One decoder layer; every projected image feature but token 5's is zero, so no other visual token carries a
    value the answer can use: its gradient, hence its relevancy, is exactly 0."""
    bundle = tiny_llava(seed=1, layers=1)
    keep = 5

    def zero_other_features(module, args, output):
        mask = torch.zeros(output.shape[-2], 1)
        mask[keep] = 1.0
        return output * mask

    handle = bundle.model.model.multi_modal_projector.register_forward_hook(zero_other_features)
    try:
        maps = [relevancy(bundle, noise_image, PROMPT, answer=word).ravel() for word in WORDS[:12]]
    finally:
        handle.remove()
    informative = [values for values in maps if values.sum() > 0]
    assert informative, "no answer word had positive relevancy"
    for values in informative:
        assert values.argmax() == keep
        assert np.delete(values, keep).max() == 0.0


def test_relative_attention_drops_a_sink_that_both_prompts_attend_to():
    rng = np.random.default_rng(0)
    generic = rng.uniform(0.5, 1.0, 16)
    generic[3] = 30.0  # the planted sink: most of the generic prompt's attention
    question = generic.copy()
    question[9] *= 6.0  # the object the question is about
    raw = question / question.sum()
    assert raw.argmax() == 3
    values = relative(torch.tensor(question), torch.tensor(generic), 0.01).numpy()
    assert values.argmax() == 9
    assert values[3] < 1.5 / 16  # the sink keeps about a uniform share
    np.testing.assert_allclose(values.sum(), 1.0, rtol=1e-6)


def test_relative_attention_is_the_ratio_of_the_traced_answer_rows(bundle, noise_image):
    """Cross-check with `generate`'s Trace: the answer row is the last prompt query row of the capture."""
    def answer_row(prompt):
        trace = generate(bundle, noise_image, prompt, max_new_tokens=1)
        rows = trace.attn_to_visual[:, :, trace.settings["prompt_queries"] - 1][[1, 2]].astype(np.float32)
        return torch.tensor(rows.mean((0, 1)))

    generic = "describe this picture ."
    expected = relative(answer_row(PROMPT), answer_row(generic), 0.01).numpy().reshape(4, 4)
    ours = relative_attention(bundle, noise_image, PROMPT, generic_prompt=generic, layers=[1, 2])
    np.testing.assert_allclose(ours, expected, rtol=2e-3, atol=1e-6)  # the Trace holds float16
    with pytest.raises(ValueError, match="layers"):
        relative_attention(bundle, noise_image, PROMPT, layers=[7])


def test_activation_map_is_the_lm_head_applied_to_the_final_normed_visual_states(bundle, noise_image):
    normed = {}
    handle = bundle.model.model.language_model.norm.register_forward_hook(
        lambda module, args, output: normed.setdefault("states", output.detach()))
    try:
        ours = activation_map(bundle, noise_image, PROMPT, answer="red").ravel()
    finally:
        handle.remove()
    token = bundle.processor.tokenizer.convert_tokens_to_ids("red")
    positions = bundle.adapter.prepare(bundle, noise_image, PROMPT).visual_positions
    logits = (normed["states"][0, positions] @ bundle.model.lm_head.weight[token]).clamp(min=0).detach().numpy()
    assert logits.sum() > 0
    np.testing.assert_allclose(ours, logits / logits.sum(), rtol=1e-5, atol=1e-7)


def test_explain_gives_all_four_maps_consistent_with_the_single_method_calls(bundle, noise_image):
    for config in (None, EVERY_HEAD):
        explanation = explain(bundle, noise_image, PROMPT, config)
        assert list(explanation.maps) == list(METHODS)
        for values in explanation.maps.values():
            assert values.shape == (4, 4) and values.min() >= 0
            np.testing.assert_allclose(values.sum(), 1.0, rtol=1e-5)
        np.testing.assert_allclose(explanation.maps["relevancy"], relevancy(bundle, noise_image, PROMPT, config),
                                   rtol=1e-6)
        np.testing.assert_allclose(explanation.maps["activation map"],
                                   activation_map(bundle, noise_image, PROMPT, config), rtol=1e-6)
        shares = explanation.mass_on_sinks()
        sinks = explanation.sink_patches
        assert shares["raw attention"] == pytest.approx(float(explanation.maps["raw attention"][sinks].sum()))
    assert sinks.any()  # EVERY_HEAD's τ makes sinks, so the share is a real sum


def test_an_empty_answer_is_refused_with_a_message(bundle, noise_image):
    with pytest.raises(ValueError, match="answer is empty"):
        activation_map(bundle, noise_image, PROMPT, answer="  ")


def test_control_characters_in_a_given_answer_are_dropped(bundle, noise_image):
    from var_core.explain.forward import answer_id

    clean = answer_id(bundle, torch.zeros(1), "red")
    assert answer_id(bundle, torch.zeros(1), "\x00\x1b red\x07") == clean
    with pytest.raises(ValueError, match="answer is empty"):
        answer_id(bundle, torch.zeros(1), "\x00\x1b")


@pytest.mark.parametrize("gradients", [False, True])
def test_the_maps_read_another_methods_attention_as_generate_records_it(bundle, noise_image, gradients):
    """An intervention (here VAF) acts in the explanation's passes as in `generate`: the answer row's attention is
    the one the method's run records, and differs from the baseline's."""
    from var_core.interventions.vaf import VAF

    vaf = VAF(enh_para=3.0, sup_para=0.2, start_layer=1, end_layer=3)
    trace = generate(bundle, noise_image, PROMPT, max_new_tokens=1, intervention=vaf)
    row = trace.settings["prompt_queries"] - 1
    forward = answer_forward(bundle, noise_image, PROMPT, gradients=gradients, intervention=vaf)
    captured = trace.attn_to_visual[:, :, row].astype(np.float32).mean(1)
    np.testing.assert_allclose(forward.attention.numpy(), captured, rtol=1e-3, atol=1e-6)
    baseline = answer_forward(bundle, noise_image, PROMPT, gradients=gradients)
    assert np.abs(forward.attention.numpy() - baseline.attention.numpy())[1:3].max() > 1e-3
    assert np.array_equal(forward.attention.numpy()[0], baseline.attention.numpy()[0])  # layer 0 untouched
