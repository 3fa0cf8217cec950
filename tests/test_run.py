"""`var_core.run.generate` end to end on the tiny LLaVA: answers, Trace contents, per-run isolation."""

import numpy as np
import pytest
import torch

from dataclasses import replace

from tests.signals import StopAfter
from var_core.config import VARConfig
from var_core.models.bundle import PreparedInputs
from var_core.models.llava import LlavaAdapter
from var_core.run import GenerationStopped, generate
from var_core.trace import Trace
from viz.evidence import visual_by_phi
from viz.queries import attention_map

PROMPT = "what colour is the square ?"
VAR = VARConfig(p=0.6, tau=1.2)


@pytest.fixture(scope="module")
def baseline(tiny_bundle, noise_image):
    return generate(tiny_bundle, noise_image, PROMPT, max_new_tokens=6)


@pytest.fixture(scope="module")
def with_var(tiny_bundle, noise_image):
    return generate(tiny_bundle, noise_image, PROMPT, config=VAR, max_new_tokens=6)


def test_trace_shapes(tiny_bundle, baseline):
    layers, heads, n_visual = tiny_bundle.num_layers, tiny_bundle.num_heads, 16
    queries = len(baseline.query_positions)
    assert baseline.grid == (4, 4) and len(baseline.visual_positions) == n_visual
    assert baseline.attn_to_visual.shape == (layers, heads, queries, n_visual)
    for name in ("visual_mass", "sink_mass", "ratio", "selected"):
        assert getattr(baseline, name).shape == (layers, heads, queries)
    assert baseline.phi.shape == baseline.sink_mask.shape == (layers, baseline.n_prompt)
    assert baseline.image.shape == (32, 32, 3) and baseline.image.dtype == np.uint8
    assert baseline.attn_to_visual_raw is None and not baseline.var_applied
    assert baseline.profile_hidden.shape == (3, 64)


def test_queries_are_the_text_after_the_image_then_each_fed_back_token(baseline):
    first = baseline.visual_positions.max() + 1
    n_generated = len(baseline.tokens) - baseline.n_prompt
    assert baseline.query_positions[0] == first
    assert baseline.query_positions[-1] == len(baseline.tokens) - 2  # the last token is never fed back
    assert len(baseline.query_positions) == baseline.n_prompt - first + n_generated - 1
    assert n_generated == 6


def test_answer_is_the_decoded_generation(tiny_bundle, baseline):
    specials = set(tiny_bundle.processor.tokenizer.all_special_tokens)
    words = [token for token in baseline.tokens[baseline.n_prompt:] if token not in specials]
    assert words and baseline.answer == " ".join(words)


def test_generation_is_greedy_and_reproducible(tiny_bundle, noise_image, baseline):
    again = generate(tiny_bundle, noise_image, PROMPT, max_new_tokens=6)
    assert again.answer == baseline.answer
    assert np.array_equal(again.attn_to_visual, baseline.attn_to_visual)


def test_var_trace_keeps_raw_and_redistributed_attention(with_var):
    assert with_var.var_applied and with_var.attn_to_visual_raw.shape == with_var.attn_to_visual.shape
    selected = with_var.selected
    assert selected.any()
    # rows outside the selected heads or outside VAR layers are identical before and after
    untouched = ~selected
    assert np.array_equal(with_var.attn_to_visual[untouched], with_var.attn_to_visual_raw[untouched])
    # redistribution moves mass onto visual tokens in the selected rows
    after = with_var.attn_to_visual.sum(-1)[selected]
    before = with_var.attn_to_visual_raw.sum(-1)[selected]
    assert (after >= before - 1e-6).all() and (after > before + 1e-4).any()


def test_var_acts_during_decoding_too(with_var):
    decode_rows = with_var.query_positions >= with_var.n_prompt
    changed = np.abs(with_var.attn_to_visual - with_var.attn_to_visual_raw).max(axis=(0, 1, 3))
    assert (changed[decode_rows] > 1e-6).any()


def test_default_var_layers_skip_first_two_and_last(tiny_bundle, with_var):
    assert with_var.settings["var_layers"] == [2]  # 4 layers: 2 … L−2
    assert VARConfig().resolve_layers(32) == tuple(range(2, 31))


def test_runs_do_not_leak_state(tiny_bundle, noise_image, baseline):
    generate(tiny_bundle, noise_image, PROMPT, config=VARConfig(p=1.0, tau=0.5), max_new_tokens=6)
    after = generate(tiny_bundle, noise_image, PROMPT, max_new_tokens=6)
    assert after.answer == baseline.answer
    assert np.array_equal(after.sink_mask, baseline.sink_mask)
    assert np.array_equal(after.attn_to_visual, baseline.attn_to_visual)


def test_capture_off_still_answers(tiny_bundle, noise_image, baseline):
    trace = generate(tiny_bundle, noise_image, PROMPT, capture=False, max_new_tokens=6)
    assert trace.answer == baseline.answer and trace.attn_to_visual.shape[2] == 0


def test_trace_round_trips_through_npz_without_pickle(tmp_path, with_var):
    path = with_var.save(tmp_path / "trace.npz")
    loaded = Trace.load(path)
    assert loaded.answer == with_var.answer and loaded.grid == with_var.grid
    assert np.array_equal(loaded.attn_to_visual_raw, with_var.attn_to_visual_raw)
    assert loaded.settings == with_var.settings and loaded.tokens == with_var.tokens


def test_cells_draw_each_visual_token_where_the_layout_puts_it(tiny_bundle, noise_image, with_var):
    class TransposedAdapter(LlavaAdapter):
        def prepare(self, bundle, image, prompt):
            full = super().prepare(bundle, image, prompt)
            rows, cols = full.grid
            return PreparedInputs(full.inputs, full.visual_positions, (cols, rows), full.image.transpose(1, 0, 2),
                                  cells=full.cells.T.copy())

    transposed = replace(tiny_bundle, adapter=TransposedAdapter())
    trace = generate(transposed, noise_image, PROMPT, config=VAR, max_new_tokens=6)
    assert np.array_equal(trace.attn_to_visual, with_var.attn_to_visual)  # every visual token, token order
    assert np.array_equal(attention_map(trace, 2), attention_map(with_var, 2).T)  # drawn at the layout's cells
    with pytest.raises(ValueError, match="exactly once"):
        PreparedInputs({}, torch.arange(4), (2, 2), np.zeros((2, 2, 3), np.uint8), cells=np.array([[0, 1], [1, 3]]))


def test_summary_lists_sinks_and_selected_heads(with_var):
    summary = with_var.summary()
    assert len(summary["sinks"]) == with_var.num_layers
    assert sum(entry["count"] for entry in summary["sinks"]) == int(with_var.visual_sinks.sum())
    assert all(0 <= head["r"] <= 1 and head["r"] >= VAR.rho for head in summary["heads"])


@pytest.mark.parametrize("kwargs, message", [
    ({"prompt": "   "}, "prompt is empty"),
    ({"prompt": "x" * 5000}, "limit"),
    ({"max_new_tokens": 0}, "max_new_tokens"),
    ({"image": None}, "no image"),
    ({"config": VARConfig(tau=100.0)}, "tau="),
])
def test_bad_inputs_raise_clear_errors(tiny_bundle, noise_image, kwargs, message):
    args = {"image": noise_image, "prompt": PROMPT, **kwargs}
    with pytest.raises(ValueError, match=message):
        generate(tiny_bundle, args.pop("image"), args.pop("prompt"), **args)


@pytest.mark.parametrize("kwargs", [{"p": 1.2}, {"rho": -0.1}, {"min_visual_mass": float("nan")}])
def test_config_rejects_out_of_range_values(kwargs):
    with pytest.raises(ValueError):
        VARConfig(**kwargs)


def test_config_rejects_missing_layers():
    with pytest.raises(ValueError, match="do not exist"):
        VARConfig(layers=(1, 40)).resolve_layers(4)


def test_baseline_measures_with_the_given_settings_but_does_not_redistribute(tiny_bundle, noise_image, baseline):
    measured = generate(tiny_bundle, noise_image, PROMPT, max_new_tokens=6, measure=VARConfig(tau=0.5))
    assert measured.attn_to_visual_raw is None and measured.settings["tau"] == 0.5
    assert measured.answer == baseline.answer
    assert np.array_equal(measured.attn_to_visual, baseline.attn_to_visual)
    assert measured.visual_sinks.sum() > baseline.visual_sinks.sum()


def test_control_characters_are_dropped_but_text_is_kept():
    from var_core.run import clean_prompt
    assert clean_prompt("what\x00 colour\x1b[31m is\tit?\n😀 ما هذا") == "what colour[31m is\tit?\n😀 ما هذا"


def test_prompt_of_only_control_characters_is_empty(tiny_bundle, noise_image):
    with pytest.raises(ValueError, match="prompt is empty"):
        generate(tiny_bundle, noise_image, "\x00\x01\x02")


def test_max_time_bounds_decoding(tiny_bundle, noise_image):
    trace = generate(tiny_bundle, noise_image, PROMPT, max_new_tokens=200, max_time=0.0)
    assert len(trace.tokens) - trace.n_prompt <= 2


def test_stop_signal_ends_decoding_at_the_next_token(tiny_bundle, noise_image):
    signal = StopAfter(checks=4)  # one check before prefill, then one per decoding step
    with pytest.raises(GenerationStopped):
        generate(tiny_bundle, noise_image, PROMPT, max_new_tokens=200, stop=signal)
    assert signal.calls <= 7  # a handful of steps, not 200


def test_stop_signal_set_before_the_run_skips_the_model(tiny_bundle, noise_image, monkeypatch):
    monkeypatch.setattr(tiny_bundle.model, "generate", lambda *a, **k: pytest.fail("the model must not run"))
    with pytest.raises(GenerationStopped):
        generate(tiny_bundle, noise_image, PROMPT, stop=StopAfter(checks=0))


def test_unset_stop_signal_changes_nothing(tiny_bundle, noise_image, baseline):
    trace = generate(tiny_bundle, noise_image, PROMPT, max_new_tokens=6, stop=StopAfter(checks=10**6))
    assert trace.tokens == baseline.tokens
    np.testing.assert_array_equal(trace.visual_mass, baseline.visual_mass)


def test_top5_per_step_are_the_softmax_of_the_scores_generate_returns(tiny_bundle, noise_image, baseline):
    prepared = tiny_bundle.adapter.prepare(tiny_bundle, noise_image, PROMPT)
    tiny_bundle.model.set_attn_implementation("sdpa")
    with torch.no_grad():
        plain = tiny_bundle.model.generate(**prepared.inputs, max_new_tokens=6, do_sample=False, output_scores=True,
                                           return_dict_in_generate=True)
    probs, ids = torch.softmax(torch.cat(plain.scores).float(), -1).topk(5)
    assert baseline.top_token_ids.shape == baseline.top_probs.shape == (6, 5)
    assert baseline.top_probs.dtype == np.float32
    assert np.array_equal(baseline.top_token_ids, ids.numpy())
    assert np.allclose(baseline.top_probs, probs.numpy(), atol=1e-5)
    generated = plain.sequences[0, baseline.n_prompt:].numpy()
    assert np.array_equal(baseline.top_token_ids[:, 0], generated)  # greedy: the chosen token is the likeliest
    assert baseline.top_tokens[0][0] == baseline.tokens[baseline.n_prompt]
    first = list(zip(baseline.top_tokens[0], baseline.top_probs[0].tolist()))
    assert baseline.summary()["first_token_top5"] == first


def test_top5_round_trip_and_traces_saved_before_them_load_with_none(tmp_path, with_var):
    loaded = Trace.load(with_var.save(tmp_path / "trace.npz"))
    assert np.array_equal(loaded.top_token_ids, with_var.top_token_ids)
    assert np.array_equal(loaded.top_probs, with_var.top_probs) and loaded.top_tokens == with_var.top_tokens
    older = replace(with_var, top_token_ids=None, top_probs=None, top_tokens=None)
    old = Trace.load(older.save(tmp_path / "old.npz"))
    assert old.top_token_ids is None and old.top_probs is None and old.first_top() is None
    assert old.summary()["first_token_top5"] is None


def test_profile_is_taken_where_the_largest_visual_phi_appears(baseline):
    visual_phi = baseline.phi_visual.max(1)  # [L]
    assert baseline.profile_layer == int(np.argmax(visual_phi))  # the first layer reaching the largest φ
    assert baseline.profile_layer != baseline.num_layers // 2  # where the old fixed profile layer sat
    strongest = baseline.visual_positions[visual_by_phi(baseline)[-1]]
    assert baseline.profile_tokens[1] == strongest and baseline.profile_tokens[0] == 0
    dims = list(baseline.settings["sink_dims"])
    assert np.isclose(baseline.profile_hidden[1, dims].max(), baseline.phi[baseline.profile_layer, strongest],
                      rtol=1e-4)  # the profiled row is the hidden state φ was measured on
