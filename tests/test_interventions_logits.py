"""Logits-stage interventions: the contrast branch (`var_core.interventions.contrast`), VCD and PAI's text-only
guidance, by hand on small tensors and against slow references on the tiny models."""

import math

import numpy as np
import pytest
import torch

from tests.tiny_models import tiny_qwen2_vl
from var_core import hook
from var_core.interventions.contrast import ContrastProcessor, without_image
from var_core.interventions.pai import PAI, pai_guidance
from var_core.interventions.vcd import VCD, add_diffusion_noise, diffusion_schedule, noised_inputs, vcd_logits
from var_core.run import generate

PROMPT = "what colour is the square ?"
STEPS = 5
INF = math.inf


@pytest.fixture(scope="module")
def baseline(tiny_bundle, noise_image):
    return generate(tiny_bundle, noise_image, PROMPT, max_new_tokens=STEPS)


class Keeping:
    """Wraps an intervention so the test keeps the logits processor generate builds, and records what goes through
    it: the main branch's scores, the branch's logits, the scores returned."""

    def __init__(self, method):
        self.method, self.processor, self.seen = method, None, []

    def __getattr__(self, name):
        return getattr(self.method, name)

    def logits_processor(self, bundle, prepared):
        self.prepared = prepared
        processor = self.method.logits_processor(bundle, prepared)
        if processor is not None:
            combine = processor.combine

            def recording(scores, branch):
                out = combine(scores, branch)
                self.seen.append((scores.clone(), branch.clone(), out.clone()))
                return out
            processor.combine = recording
        self.processor = processor
        return processor


def top5(scores: torch.Tensor):
    probs, ids = torch.softmax(scores.float(), -1).topk(5)
    return ids.numpy(), probs.numpy()


def plain_logits(bundle, inputs: dict, generated: torch.Tensor) -> torch.Tensor:
    """[1, V] next-token logits of `inputs` followed by `generated`, one full forward pass, sdpa, no cache."""
    ids = torch.cat([inputs["input_ids"], generated[None]], dim=1)
    kwargs = {**inputs, "input_ids": ids, "attention_mask": torch.ones_like(ids)}
    bundle.model.set_attn_implementation("sdpa")
    with torch.no_grad():
        return bundle.model(**kwargs, use_cache=False).logits[:, -1].float()


# ---- the formulas by hand -----------------------------------------------------------------------------------------

def test_vcd_formula_by_hand():
    logits, distorted = torch.tensor([[2.0, 1.0, 0.0, -3.0]]), torch.tensor([[1.0, 2.0, 0.0, 0.0]])
    # (1 + 1)·l − 1·l′ = [3, 0, 0, −6]; cut: l < log 0.1 + 2 = −0.30 drops only the last token
    assert torch.equal(vcd_logits(logits, distorted, 1.0, 0.1), torch.tensor([[3.0, 0.0, 0.0, -INF]]))
    # α = 0.5: 1.5·l − 0.5·l′ = [2.5, 0.5, 0, −4.5]
    assert torch.equal(vcd_logits(logits, distorted, 0.5, 0.1), torch.tensor([[2.5, 0.5, 0.0, -INF]]))
    # β = 0.5: log 0.5 + 2 = 1.31 keeps the first token only
    assert torch.equal(vcd_logits(logits, distorted, 1.0, 0.5), torch.tensor([[3.0, -INF, -INF, -INF]]))
    # β = 0: nothing is cut
    assert torch.equal(vcd_logits(logits, distorted, 1.0, 0.0), torch.tensor([[3.0, 0.0, 0.0, -6.0]]))


def test_vcd_cut_on_logits_keeps_what_the_papers_cut_on_probabilities_keeps():
    torch.manual_seed(0)
    logits, distorted = torch.randn(50, 100) * 3, torch.randn(50, 100) * 3
    for beta in (0.01, 0.1, 0.3, 0.9):
        probs = torch.softmax(logits, -1)
        kept = probs >= beta * probs.max(-1, keepdim=True).values
        assert torch.equal(torch.isfinite(vcd_logits(logits, distorted, 1.0, beta)), kept)


def test_pai_guidance_formula_by_hand():
    probs = torch.tensor([[0.5, 0.3, 0.16, 0.04]])
    scores, text_only = probs.log(), torch.full((1, 4), 0.25).log()
    # γ = 2: 2·(log p − log ¼) + log ¼ = log(p² · 4) = [log 1, log .36, log .1024]; p = .04 < 0.1·0.5 is cut
    expected = torch.tensor([[0.0, math.log(0.36), math.log(0.1024), -INF]])
    assert torch.allclose(pai_guidance(scores, text_only, 2.0), expected, atol=1e-6)
    # γ = 1.5: 1.5·log p − 0.5·log ¼
    expected = torch.tensor([[1.5 * math.log(p) - 0.5 * math.log(0.25) for p in (0.5, 0.3, 0.16)] + [-INF]])
    assert torch.allclose(pai_guidance(scores, text_only, 1.5), expected, atol=1e-6)
    # log-probabilities: the raw scores' shift does not matter
    assert torch.allclose(pai_guidance(scores + 7, text_only - 3, 2.0), pai_guidance(scores, text_only, 2.0))


def test_noise_schedule_at_step_500_is_the_formula():
    x = np.linspace(-6, 6, 1000)
    betas = 1 / (1 + np.exp(-x)) * (0.5e-2 - 1e-5) + 1e-5
    alpha_bar = np.prod(1 - betas[:501])  # t = 500 counted from 0
    schedule = diffusion_schedule()
    assert schedule.shape == (1000,)
    assert float(schedule[500]) == pytest.approx(alpha_bar, rel=1e-5)
    assert float(schedule[500]) == pytest.approx(0.7448, abs=1e-4)  # v′ keeps sqrt(ᾱ) ≈ 0.863 of the image
    pixels = torch.linspace(-2, 2, 3 * 8 * 8).reshape(1, 3, 8, 8)
    noise = torch.randn(pixels.shape, generator=torch.Generator().manual_seed(3))
    expected = math.sqrt(alpha_bar) * pixels + math.sqrt(1 - alpha_bar) * noise
    assert torch.allclose(add_diffusion_noise(pixels, 500, seed=3), expected, atol=1e-5)
    assert torch.equal(add_diffusion_noise(pixels, 500), add_diffusion_noise(pixels, 500))  # deterministic
    assert not torch.equal(add_diffusion_noise(pixels, 500, seed=1), add_diffusion_noise(pixels, 500, seed=2))


@pytest.mark.parametrize("make, message", [
    (lambda: VCD(alpha=-0.5), r"alpha=-0.5 must be a number in \[0, 10\]"),
    (lambda: VCD(alpha=float("nan")), r"alpha=nan must be a number in \[0, 10\]"),
    (lambda: VCD(beta=1.5), r"beta=1.5 must be a number in \[0, 1\]"),
    (lambda: VCD(noise_step=1000), r"noise_step=1000 must be an integer in \[0, 999\]"),
    (lambda: VCD(noise_step=2.5), r"noise_step=2.5 must be an integer in \[0, 999\]"),
    (lambda: VCD(seed=-1), r"seed=-1 must be an integer in \[0, "),
    (lambda: PAI(gamma=0.5), r"gamma=0.5 must be a number in \[1, 10\]"),
])
def test_bad_parameters_are_refused_with_the_valid_range(make, message):
    with pytest.raises(ValueError, match=message):
        make()


# ---- on the tiny model --------------------------------------------------------------------------------------------

def test_vcd_generate_follows_the_paper_formula(tiny_bundle, noise_image, baseline):
    """Slow reference: per step, full forward passes (no cache) over v and the noised v′, then
    p_vcd ∝ softmax((1 + α)·log p(y|v,x) − α·log p(y|v′,x)) on {y: p(y|v,x) ≥ β·max p}, as the paper writes it."""
    alpha, beta, step = 1.0, 0.9, 300  # a β that cuts on the tiny model's flat distribution
    kept = Keeping(VCD(alpha=alpha, beta=beta, noise_step=step, seed=5))
    trace = generate(tiny_bundle, noise_image, PROMPT, max_new_tokens=STEPS, intervention=kept)
    inputs = kept.prepared.inputs
    x = np.linspace(-6, 6, 1000)
    alpha_bar = float(np.prod(1 - (1 / (1 + np.exp(-x)) * (0.5e-2 - 1e-5) + 1e-5)[:step + 1]))
    eps = torch.randn(inputs["pixel_values"].shape, generator=torch.Generator().manual_seed(5))
    noised = {**inputs, "pixel_values": math.sqrt(alpha_bar) * inputs["pixel_values"] + math.sqrt(1 - alpha_bar) * eps}
    generated = torch.as_tensor(trace.top_token_ids[:, 0])
    cuts = 0
    for t in range(STEPS):
        p = torch.log_softmax(plain_logits(tiny_bundle, inputs, generated[:t]), -1)
        q = torch.log_softmax(plain_logits(tiny_bundle, noised, generated[:t]), -1)
        head = p.exp() >= beta * p.exp().max()
        cuts += int((~head).sum())
        ids, probs = top5(((1 + alpha) * p - alpha * q).masked_fill(~head, -INF)[0])
        np.testing.assert_allclose(trace.top_probs[t], probs, atol=2e-5)
        np.testing.assert_array_equal(trace.top_token_ids[t][probs > 1e-6], ids[probs > 1e-6])
    assert cuts > 0  # the plausibility cut acted
    assert kept.processor.branch.calls == STEPS  # one prefill, then one pass per fed token


def test_vcd_changes_the_distribution_and_records_its_settings(tiny_bundle, noise_image, baseline):
    trace = generate(tiny_bundle, noise_image, PROMPT, max_new_tokens=STEPS, intervention=VCD())
    changed = sum(not np.allclose(a, b, atol=1e-6) for a, b in zip(trace.top_probs, baseline.top_probs))
    assert changed > 0, "VCD changed no step's next-token distribution"
    assert trace.settings["intervention"] == {"method": "vcd", "alpha": 1.0, "beta": 0.1, "noise_step": 500,
                                              "seed": 0}


def test_alpha_zero_and_gamma_one_are_exact_no_ops(tiny_bundle, noise_image, baseline):
    prepared = tiny_bundle.adapter.prepare(tiny_bundle, noise_image, PROMPT)
    assert VCD(alpha=0).logits_processor(tiny_bundle, prepared) is None
    assert PAI(gamma=1.0).logits_processor(tiny_bundle, prepared) is None
    for method in (VCD(alpha=0), PAI(alpha=0.0, gamma=1.0)):
        trace = generate(tiny_bundle, noise_image, PROMPT, max_new_tokens=STEPS, intervention=method)
        np.testing.assert_array_equal(trace.top_probs, baseline.top_probs)
        np.testing.assert_array_equal(trace.top_token_ids, baseline.top_token_ids)
        assert trace.tokens == baseline.tokens


def test_the_branch_runs_outside_the_hook(tiny_bundle, noise_image, baseline, monkeypatch):
    """A spy on the first decoder layer sees the run state at every main-branch call and none at every branch call;
    the Trace captures exactly the baseline's query rows (the branch adds none); its sinks are the baseline's."""
    states = []
    handle = tiny_bundle.model.model.language_model.layers[0].register_forward_pre_hook(
        lambda module, args: states.append(hook._ACTIVE_RUN.get()))
    try:
        kept = Keeping(VCD())
        trace = generate(tiny_bundle, noise_image, PROMPT, max_new_tokens=STEPS, intervention=kept)
    finally:
        handle.remove()
    assert sum(state is None for state in states) == kept.processor.branch.calls == STEPS
    assert sum(state is not None for state in states) == STEPS
    assert hook._ACTIVE_RUN.get() is None
    assert trace.visual_mass.shape == baseline.visual_mass.shape
    np.testing.assert_array_equal(trace.visual_mass, baseline.visual_mass)  # the first step is VCD's too
    np.testing.assert_array_equal(trace.phi, baseline.phi)


def test_without_image_is_the_chat_prompt_without_the_image(tiny_bundle, noise_image):
    prepared = tiny_bundle.adapter.prepare(tiny_bundle, noise_image, PROMPT)
    text = without_image(prepared.inputs, prepared.visual_positions)
    assert set(text) == {"input_ids", "attention_mask"}
    tokenizer = tiny_bundle.tokenizer
    expected = tokenizer.decode(prepared.inputs["input_ids"][0]).replace("<image>", "").split()
    assert tokenizer.decode(text["input_ids"][0]).split() == expected
    assert text["input_ids"].shape[1] == prepared.inputs["input_ids"].shape[1] - len(prepared.visual_positions)
    assert noised_inputs(prepared.inputs, 500)["pixel_values"].shape == prepared.inputs["pixel_values"].shape


def test_pai_guidance_against_the_text_only_reference(tiny_bundle, noise_image):
    """PAI with γ = 2: each step's text-only logits are the plain model's over the prompt without the image and the
    answer so far (no amplification there); the scores returned are CFG.py's formula of the main and branch logits;
    the amplification acts in the main branch only (PAI.scores is called as often as without guidance)."""
    calls = {"n": 0}
    original = PAI.scores

    def counting(self, site, scores):
        calls["n"] += 1
        return original(self, site, scores)
    PAI.scores = counting
    try:
        unguided = generate(tiny_bundle, noise_image, PROMPT, max_new_tokens=STEPS,
                            intervention=PAI(alpha=0.5, start_layer=1, end_layer=4, gamma=1.0))
        main_calls, calls["n"] = calls["n"], 0
        kept = Keeping(PAI(alpha=0.5, start_layer=1, end_layer=4, gamma=2.0))
        trace = generate(tiny_bundle, noise_image, PROMPT, max_new_tokens=STEPS, intervention=kept)
    finally:
        PAI.scores = original
    assert calls["n"] == main_calls == 3 * STEPS
    text = without_image(kept.prepared.inputs, kept.prepared.visual_positions)
    generated = torch.as_tensor(trace.top_token_ids[:, 0])
    for t, (scores, branch, out) in enumerate(kept.seen):
        torch.testing.assert_close(branch, plain_logits(tiny_bundle, text, generated[:t]), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(out, pai_guidance(scores, branch, 2.0))
        ids, probs = top5(out[0])
        np.testing.assert_allclose(trace.top_probs[t], probs, atol=1e-6)
    np.testing.assert_allclose(torch.softmax(kept.seen[0][0][0], -1).topk(5).values.numpy(), unguided.top_probs[0],
                               atol=1e-6)  # the main branch at step 1 is the unguided run's
    changed = sum(not np.allclose(a, b, atol=1e-6) for a, b in zip(trace.top_probs, unguided.top_probs))
    assert changed > 0


def test_a_branch_leaves_the_main_branch_of_qwen2_vl_alone():
    """Qwen2-VL keeps its rotary offset (`rope_deltas`) on the model between calls; a text-only branch that does not
    change the scores leaves the run exactly as without it, its logits are the plain text-only model's, and the
    model's offset stays the main branch's between steps."""
    bundle = tiny_qwen2_vl()
    from tests.tiny_models import noise_image as make_image
    image = make_image(64, 64)
    plain = generate(bundle, image, PROMPT, max_new_tokens=STEPS)

    class Identity:
        name = "identity"

        def __init__(self):
            self.seen = []

        def check(self, num_layers):
            pass

        def acts_on_scores(self, layer):
            return False

        acts_on_heads = acts_on_scores

        def settings(self):
            return {"method": self.name}

        def logits_processor(self, bundle, prepared):
            self.prepared = prepared
            return ContrastProcessor(bundle.model, without_image(prepared.inputs, prepared.visual_positions),
                                     lambda scores, branch: self.seen.append(branch) or deltas.append(
                                         bundle.model.model.rope_deltas.clone()) or scores)
    deltas = []
    method = Identity()
    traced = generate(bundle, image, PROMPT, max_new_tokens=STEPS, intervention=method)
    np.testing.assert_array_equal(traced.top_probs, plain.top_probs)
    assert traced.tokens == plain.tokens
    text = without_image(method.prepared.inputs, method.prepared.visual_positions)
    generated = torch.as_tensor(traced.top_token_ids[:, 0])
    for t, branch in enumerate(method.seen):
        torch.testing.assert_close(branch, plain_logits(bundle, text, generated[:t]), atol=1e-4, rtol=1e-4)
    # between steps the model holds the main branch's rotary offset (the image's), not the text-only branch's zeros
    assert len(deltas) == len(method.seen) == len(traced.top_probs) and (deltas[0] != 0).any()
    assert all(torch.equal(delta, deltas[0]) for delta in deltas)
