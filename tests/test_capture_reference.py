"""The fast hook (one matmul of masses per call, in-place VAR, capture kept on the device until the run ends) gives
the same Trace as a plain reference that keeps every call's full attention and applies the public `redistribute`
and `head_statistics` to it — through prefill and cached decode steps, for every VAR option."""

import numpy as np
import pytest
import torch
from transformers import AttentionInterface
from transformers.models.llama.modeling_llama import repeat_kv

from bench.common import changed_rows
from var_core.config import VARConfig
from var_core.heads import head_statistics
from var_core.hook import _ACTIVE_RUN, ATTENTION_NAME, _mask_keys, var_attention_forward
from var_core.redistribute import redistribute
from var_core.run import generate

PROMPT = "what colour is the square ?"
NEW_TOKENS = 5


class ReferenceAttention:
    """Registered as the hook's attention for one run: eager attention + VAR by the public functions, recording
    each call's full attention before and after VAR (fine on a tiny model; the real hook never does this)."""

    def __init__(self):
        self.calls: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}

    def __call__(self, module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
        state = _ACTIVE_RUN.get()
        keys_, values = repeat_kv(key, module.num_key_value_groups), repeat_kv(value, module.num_key_value_groups)
        scores = torch.matmul(query, keys_.transpose(2, 3)) * scaling + attention_mask[:, :, :, : keys_.shape[-2]]
        if state.mask_positions is not None:
            scores = _mask_keys(state, scores)
        raw = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
        new = raw
        layer = module.layer_idx
        if state.var is not None and layer in state.var_layers:
            visual, sinks, query_rows = masks(state, layer, raw)
            recycled = sinks if state.var.recycle_text_sinks else sinks & visual
            receivers = visual if state.var.budget_to == "visual" else ~visual & ~sinks
            if state.var.select_heads:
                rows = selected_rows(state, raw, visual, sinks) & query_rows[:, None, :]
            else:
                rows = query_rows[:, None, :].expand(raw.shape[:3])
            new = redistribute(raw, visual, recycled, rows, state.var.p, receiver_mask=receivers)
        self.calls.setdefault(layer, []).append((raw, new))
        return torch.matmul(new, values).transpose(1, 2).contiguous(), new


def masks(state, layer, attn):
    """(visual, sinks, query rows) for this call's keys and rows."""
    queries, keys = attn.shape[-2:]
    pad = keys - state.visual_mask.shape[1]
    visual = torch.nn.functional.pad(state.visual_mask, (0, pad), value=False)
    sinks = torch.nn.functional.pad(state.sink_masks[layer], (0, pad), value=False)
    query_rows = (torch.arange(keys - queries, keys) >= state.query_start)[None]
    return visual, sinks, query_rows


def selected_rows(state, attn, visual, sinks):
    """The paper's rule: visual mass ≥ min, r ≥ ρ, in a layer that has visual sinks."""
    mass, ratio, _ = head_statistics(attn, visual, sinks)
    chosen = (mass >= state.selection.min_visual_mass) & (ratio >= state.selection.rho)
    return chosen & (sinks & visual).any(-1)[:, None, None]


def expected_arrays(reference: ReferenceAttention, state, grid) -> dict[str, np.ndarray]:
    """What the Trace should hold, from the recorded full attention of every call."""
    out = {name: [] for name in ("attn_to_visual", "attn_to_visual_raw", "visual_mass", "sink_mass", "ratio",
                                 "selected")}
    for layer in sorted(reference.calls):
        per_call = {name: [] for name in out}
        for raw, new in reference.calls[layer]:
            visual, sinks, query_rows = masks(state, layer, raw)
            rows = query_rows[0]
            mass, ratio, sink_mass = head_statistics(raw, visual, sinks)
            per_call["attn_to_visual"].append(new[0][:, rows][..., grid])
            per_call["attn_to_visual_raw"].append(raw[0][:, rows][..., grid])
            per_call["visual_mass"].append(mass[0][:, rows])
            per_call["sink_mass"].append(sink_mass[0][:, rows])
            per_call["ratio"].append(ratio[0][:, rows])
            per_call["selected"].append(selected_rows(state, raw, visual, sinks)[0][:, rows])
        for name in out:
            out[name].append(torch.cat(per_call[name], dim=1))
    return {name: torch.stack(value).numpy() for name, value in out.items()}


def reference_run(bundle, image, config, new_tokens=NEW_TOKENS, **kwargs):
    """Run `generate` with the reference attention in place of the hook's; returns (trace, recorder, state)."""
    reference = ReferenceAttention()
    seen = {}

    def recording(module, *args, **kw):
        seen["state"] = _ACTIVE_RUN.get()
        return reference(module, *args, **kw)

    AttentionInterface.register(ATTENTION_NAME, recording)
    try:
        trace = generate(bundle, image, PROMPT, config=config, measure=BASELINE_MEASURE, max_new_tokens=new_tokens,
                         **kwargs)
    finally:
        AttentionInterface.register(ATTENTION_NAME, var_attention_forward)
    return trace, reference, seen["state"]


# At τ = 2 layer 2 of the tiny model has no visual sink (its visual φ stays below 1.6), layers 0, 1 and 3 do.
LAYERS = (1, 2, 3)
CONFIGS = {
    "baseline": None,
    "VAR": VARConfig(tau=2.0, p=0.6, layers=LAYERS),
    "every head (no selection)": VARConfig(tau=2.0, select_heads=False, layers=LAYERS),
    "visual sinks only": VARConfig(tau=1.0, recycle_text_sinks=False, layers=LAYERS),
    "budget to text": VARConfig(tau=1.0, budget_to="text", layers=LAYERS),
    "rho 0, no mass floor": VARConfig(tau=1.0, rho=0.0, min_visual_mass=0.0, layers=LAYERS),
}
BASELINE_MEASURE = VARConfig(tau=2.0)


def assert_captured(actual: np.ndarray, expected: np.ndarray) -> None:
    """Captured attention is stored in float16: equal to the float32 reference within one float16 rounding."""
    assert actual.dtype == np.float16
    np.testing.assert_allclose(actual.astype(np.float32), expected, rtol=2 ** -10, atol=1e-7)


@pytest.mark.parametrize("name", CONFIGS)
def test_trace_equals_the_full_attention_reference(tiny_bundle, noise_image, name):
    config = CONFIGS[name]
    tiny_bundle.model.generation_config.min_new_tokens = NEW_TOKENS
    try:
        trace = generate(tiny_bundle, noise_image, PROMPT, config=config, measure=BASELINE_MEASURE,
                         max_new_tokens=NEW_TOKENS)
        reference_trace, reference, state = reference_run(tiny_bundle, noise_image, config)
    finally:
        tiny_bundle.model.generation_config.min_new_tokens = None
    assert trace.tokens == reference_trace.tokens
    expected = expected_arrays(reference, state, torch.as_tensor(trace.visual_positions))
    assert trace.attn_to_visual.shape[2] == len(trace.query_positions) > NEW_TOKENS  # prefill rows + decode steps
    assert_captured(trace.attn_to_visual, expected["attn_to_visual"])
    for field in ("visual_mass", "sink_mass", "ratio"):
        np.testing.assert_allclose(getattr(trace, field), expected[field], atol=1e-6, err_msg=field)
    if config is None:
        assert trace.attn_to_visual_raw is None
    else:
        assert_captured(trace.attn_to_visual_raw, expected["attn_to_visual_raw"])
    np.testing.assert_array_equal(trace.selected, expected["selected"])
    assert trace.selected.any()  # the comparison covers selected rows, not only empty ones
    if trace.settings["tau"] == 2.0:
        assert not trace.visual_sinks[2].any() and not trace.selected[2].any()  # and a layer without visual sinks
    if config is not None:
        moved = np.abs(trace.attn_to_visual - trace.attn_to_visual_raw).max()
        assert moved > 1e-3  # VAR acted in this run, so the comparison covers redistributed rows


def test_masked_keys_run_equals_the_reference_too(tiny_bundle, noise_image):
    config = VARConfig(tau=1.0)
    trace = generate(tiny_bundle, noise_image, PROMPT, config=config, measure=config, max_new_tokens=NEW_TOKENS,
                     mask_positions=[3, 4])
    _, reference, state = reference_run(tiny_bundle, noise_image, config, mask_positions=[3, 4])
    expected = expected_arrays(reference, state, torch.as_tensor(trace.visual_positions))
    assert trace.attn_to_visual.shape == expected["attn_to_visual"].shape
    assert_captured(trace.attn_to_visual, expected["attn_to_visual"])
    np.testing.assert_array_equal(trace.selected, expected["selected"])


def test_decoding_past_the_planned_key_capacity_still_equals_the_reference(tiny_bundle, noise_image):
    """Plans are sized for 2× the prompt; a longer answer regrows them (generated keys receive in this ablation)."""
    config, new_tokens = VARConfig(tau=1.0, budget_to="text", layers=LAYERS), 60
    tiny_bundle.model.generation_config.min_new_tokens = new_tokens
    try:
        trace = generate(tiny_bundle, noise_image, PROMPT, config=config, max_new_tokens=new_tokens)
        _, reference, state = reference_run(tiny_bundle, noise_image, config, new_tokens=new_tokens)
    finally:
        tiny_bundle.model.generation_config.min_new_tokens = None
    assert len(trace.tokens) > 2 * (trace.n_prompt + 1)
    expected = expected_arrays(reference, state, torch.as_tensor(trace.visual_positions))
    assert_captured(trace.attn_to_visual, expected["attn_to_visual"])
    np.testing.assert_array_equal(trace.selected, expected["selected"])


SYNCING = ("item", "cpu", "numpy", "tolist", "nonzero", "__bool__", "__int__", "__float__")


def test_decoding_steps_never_read_a_tensor_back_to_the_host(tiny_bundle, noise_image, monkeypatch):
    """On CUDA each of these is a device synchronisation; the hook's decode path (VAR + capture) uses none, so a
    GPU keeps running ahead. Host reads happen only at prefill (one per layer) and when the run ends."""
    import var_core.hook as hook

    reads, decoding = [], []
    for name in SYNCING:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            if decoding:
                reads.append(_name)
            return _original(self, *args, **kwargs)
        monkeypatch.setattr(torch.Tensor, name, counted)
    apply = hook._apply_var_and_capture

    def watched(state, layer, weights, record=True):
        decoding[:] = [True] if weights.shape[-2] == 1 else []
        try:
            return apply(state, layer, weights, record)
        finally:
            decoding.clear()
    monkeypatch.setattr(hook, "_apply_var_and_capture", watched)
    trace = generate(tiny_bundle, noise_image, PROMPT, config=VARConfig(tau=1.0, layers=LAYERS), max_new_tokens=6)
    assert len(trace.query_positions) > 5 + 1 and changed_rows(trace) > 0  # decode steps ran, with VAR acting
    assert reads == []


def test_a_grid_of_scattered_tokens_is_captured_like_the_reference(tiny_bundle, noise_image, monkeypatch):
    """Consecutive visual tokens are copied as a slice; scattered ones (here: listed in column-major order) are
    gathered. Both must hold exactly the attention the reference records."""
    import dataclasses

    prepare = tiny_bundle.adapter.prepare

    def transposed(bundle, image, prompt):
        prepared = prepare(bundle, image, prompt)
        rows, cols = prepared.grid
        order = torch.arange(rows * cols).reshape(rows, cols).T.flatten()
        return dataclasses.replace(prepared, visual_positions=prepared.visual_positions[order])
    monkeypatch.setattr(tiny_bundle.adapter, "prepare", transposed)
    config = VARConfig(tau=1.0, layers=LAYERS)
    trace = generate(tiny_bundle, noise_image, PROMPT, config=config, max_new_tokens=NEW_TOKENS)
    _, reference, state = reference_run(tiny_bundle, noise_image, config)
    assert not np.array_equal(trace.visual_positions, np.sort(trace.visual_positions))  # really scattered
    expected = expected_arrays(reference, state, torch.as_tensor(trace.visual_positions))
    assert_captured(trace.attn_to_visual, expected["attn_to_visual"])
    assert_captured(trace.attn_to_visual_raw, expected["attn_to_visual_raw"])
