"""The per-head interventions — SPIN's image-guided head suppression and the head-knockout probe — by hand, against
a slow reference written from SPIN's formula, and through `generate` on the tiny LLaVA."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from var_core.interventions.base import Site
from var_core.interventions.effects import answer_change, probability_change
from var_core.interventions.knockout import HeadKnockout
from var_core.interventions.spin import SPIN
from var_core.run import generate

PROMPT = "what colour is the square ?"


def site(queries: int = 3, keys: int = 8, layer: int = 1) -> Site:
    """Keys: 0–1 system prompt, 2–4 the image, 5–7 text; the last `queries` rows, the first of them not acted on."""
    visual = torch.zeros(keys, dtype=torch.bool)
    visual[2:5] = True
    rows = torch.ones(queries, dtype=torch.bool)
    rows[0] = False
    return Site(layer=layer, rows=rows, visual=visual, system=torch.arange(keys) < 2)


def weights_with_image_attention(image: list[list[float]]) -> torch.Tensor:
    """[1, H, Q, 8] rows summing to 1 whose image keys (2–4) carry image[q][h] in all, spread unevenly."""
    queries, heads = len(image), len(image[0])
    weights = torch.zeros(1, heads, queries, 8)
    for q in range(queries):
        for h in range(heads):
            mass = image[q][h]
            weights[0, h, q, 2:5] = torch.tensor([0.5, 0.3, 0.2]) * mass
            weights[0, h, q, [0, 5, 7]] = torch.tensor([0.6, 0.3, 0.1]) * (1 - mass)
    return weights


# image attention per row (rows) and head (columns); row 0 is not acted on
IMAGE = [[0.95, 0.9, 0.0, 0.05], [0.1, 0.7, 0.3, 0.5], [0.9, 0.2, 0.8, 0.1]]


def test_spin_keeps_the_top_k_image_heads_of_each_row_and_scales_the_others():
    output = torch.randn(1, 3, 4, 5)
    gated = SPIN(num_routed_heads=2, small_num_mask=0.25, rows="all", score="weights").heads(
        site(), output.clone(), weights_with_image_attention(IMAGE))
    expected = output.clone()
    expected[0, 1, [0, 2]] *= 0.25  # row 1 keeps heads 1 (0.7) and 3 (0.5)
    expected[0, 2, [1, 3]] *= 0.25  # row 2 keeps heads 0 (0.9) and 2 (0.8)
    assert torch.equal(gated, expected)
    assert torch.equal(gated[0, 0], output[0, 0])  # the row outside Site.rows: bit-identical
    assert torch.equal(gated[0, 1, [1, 3]], output[0, 1, [1, 3]]) and torch.equal(gated[0, 2, [0, 2]],
                                                                                     output[0, 2, [0, 2]])


def test_spin_code_default_gates_the_predicting_row_only_and_zeroes():
    output = torch.randn(1, 3, 4, 5)
    gated = SPIN(routed_heads=0.5, score="weights").heads(site(), output.clone(), weights_with_image_attention(IMAGE))
    expected = output.clone()
    expected[0, 2, [1, 3]] = 0.0
    assert torch.equal(gated, expected) and torch.equal(gated[0, :2], output[0, :2])


def test_spin_ranks_by_the_pre_softmax_image_scores_in_the_code_mode():
    # head 0: high image scores but higher text scores (little image weight); head 1: the opposite
    scores = torch.zeros(1, 2, 3, 8)
    scores[0, 0, :, 2:5], scores[0, 0, :, 5:] = 2.0, 6.0
    scores[0, 1, :, 2:5], scores[0, 1, :, 5:] = 1.0, -4.0
    weights = torch.softmax(scores, dim=-1)
    output = torch.randn(1, 3, 2, 4)
    by_scores = SPIN(num_routed_heads=1, rows="all")  # score="scores": the code's
    passed = scores.clone()
    assert by_scores.scores(site(), passed) is passed and torch.equal(passed, scores)  # left unchanged
    kept_scores = by_scores.heads(site(), output.clone(), weights)
    kept_weights = SPIN(num_routed_heads=1, rows="all", score="weights").heads(site(), output.clone(), weights)
    assert torch.equal(kept_scores[0, 1:, 0], output[0, 1:, 0]) and not kept_scores[0, 1:, 1].any()
    assert torch.equal(kept_weights[0, 1:, 1], output[0, 1:, 1]) and not kept_weights[0, 1:, 0].any()
    with pytest.raises(RuntimeError, match="scores stage did not run"):
        by_scores.heads(site(), output, weights)  # the stash is used once


def reference_spin(output, weights, scores, site, k, factor, rows, score):
    """SPIN row by row and head by head: per gated row, head h's image attention a_h = Σ_{j ∈ image} A[h, q, j];
    the K heads of largest a_h (lower index first on ties) keep m_h = 1, the others m_h = factor; out = m_h · h_h."""
    out = output.clone()
    source = scores if score == "scores" else weights
    queries, heads = output.shape[1], output.shape[2]
    gated = [q for q in range(queries) if site.rows[q] and (rows == "all" or q == queries - 1)]
    for q in gated:
        attention = []
        for h in range(heads):
            total = torch.zeros((), dtype=source.dtype)
            for j in range(source.shape[3]):
                if site.visual[j]:
                    total = total + source[0, h, q, j]
            attention.append((-float(total), h))
        kept = {h for _, h in sorted(attention)[:k]}
        for h in range(heads):
            if h not in kept:
                out[0, q, h] = output[0, q, h] * torch.tensor(factor, dtype=output.dtype)
    return out


@pytest.mark.parametrize("rows", ["all", "last"])
@pytest.mark.parametrize("score", ["scores", "weights"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_spin_matches_the_slow_reference_on_random_tensors(rows, score, dtype):
    generator = torch.Generator().manual_seed(["all", "last"].index(rows) * 4 + ["scores", "weights"].index(score) * 2
                                              + (dtype == torch.float16))
    heads, queries, keys = 8, 5, 12
    visual = torch.zeros(keys, dtype=torch.bool)
    visual[1:7] = True
    where = Site(layer=0, rows=torch.tensor([False, True, True, False, True]), visual=visual,
                 system=torch.arange(keys) < 1)
    for k, factor in [(3, 0.0), (5, 0.1), (0, 0.5), (8, 0.0)]:
        scores = torch.randn(1, heads, queries, keys, generator=generator)
        weights = torch.softmax(scores, dim=-1)
        output = torch.randn(1, queries, heads, 16, generator=generator).to(dtype)
        spin = SPIN(num_routed_heads=k, small_num_mask=factor, rows=rows, score=score)
        if score == "scores":
            spin.scores(where, scores.clone())
        fast = spin.heads(where, output.clone(), weights)
        assert fast.dtype == dtype
        assert torch.equal(fast, reference_spin(output, weights, scores, where, k, factor, rows, score))


def test_spin_parameters_defaults_and_ranges():
    spin = SPIN()
    assert spin.settings() == {"method": "spin", "routed_heads": 0.95, "num_routed_heads": None,
                               "small_num_mask": 0.0, "start_layer": 0, "end_layer": 32, "rows": "last",
                               "score": "scores"}
    assert spin.kept(32) == 30 and SPIN(routed_heads=0.8).kept(32) == 25 and SPIN(routed_heads=1.0).kept(4) == 4
    assert [SPIN(start_layer=1, end_layer=3).acts_on_heads(layer) for layer in range(4)] == [False, True, True, False]
    assert SPIN().acts_on_scores(0) and not SPIN(score="weights").acts_on_scores(0)
    for kwargs, message in [({"routed_heads": 1.5}, r"routed_heads=1.5 must be a number in \[0, 1\]"),
                            ({"small_num_mask": -0.1}, r"small_num_mask=-0.1 must be a number in \[0, 1\]"),
                            ({"num_routed_heads": 2.5}, r"num_routed_heads=2.5 must be an integer"),
                            ({"start_layer": -1}, r"start_layer=-1 must be an integer"),
                            ({"rows": "first"}, "rows='first' must be one of last, all"),
                            ({"score": "logits"}, "score='logits' must be one of scores, weights")]:
        with pytest.raises(ValueError, match=message):
            SPIN(**kwargs)
    with pytest.raises(ValueError, match=r"num_routed_heads=5 must be an integer in \[0, 4\]"):
        SPIN(num_routed_heads=5).kept(4)
    with pytest.raises(ValueError, match=r"start_layer=4 must be an integer in \[0, 3\]"):
        SPIN(start_layer=4).check(4)
    with pytest.raises(ValueError, match=r"end_layer=2 must be an integer in \[3, 4\]"):
        SPIN(start_layer=2, end_layer=2).check(4)
    SPIN().check(4)  # end_layer 32 (LLaVA-1.5-7B's) reads as "to the last layer" on a smaller model, as PAI's


def test_knockout_zeroes_its_heads_on_the_acted_on_rows_only():
    output = torch.randn(1, 3, 4, 5)
    probe = HeadKnockout([(1, 2), (1, 0), (3, 1), (1, 2)])
    assert probe.pairs == [(1, 0), (1, 2), (3, 1)] and probe.settings() == {
        "method": "knockout", "heads": [[1, 0], [1, 2], [3, 1]]}
    assert [probe.acts_on_heads(layer) for layer in range(4)] == [False, True, False, True]
    out = probe.heads(site(layer=1), output.clone(), torch.zeros(1, 4, 3, 8))
    expected = output.clone()
    expected[0, 1:, [0, 2]] = 0.0
    assert torch.equal(out, expected) and torch.equal(out[0, 0], output[0, 0])
    with pytest.raises(ValueError, match=r"head=4 in layer 1 must be an integer in \[0, 3\]"):
        HeadKnockout([(1, 4)]).heads(site(layer=1), output, torch.zeros(1, 4, 3, 8))
    with pytest.raises(ValueError, match=r"layer=4 must be an integer in \[0, 3\]"):
        HeadKnockout([(4, 0)]).check(4)
    for bad, message in [([(1,)], "must be a \\(layer, head\\) pair"), ([(-1, 0)], "layer=-1"),
                         ([(0, 1.5)], "head=1.5"), ([3], "must be a \\(layer, head\\) pair")]:
        with pytest.raises(ValueError, match=message):
            HeadKnockout(bad)
    assert not any(HeadKnockout().acts_on_heads(layer) for layer in range(4))


def tops(ids, probs, tokens=None):
    return SimpleNamespace(top_token_ids=np.array(ids), top_probs=np.array(probs, dtype=np.float32),
                           top_tokens=tokens)


def test_probability_change_reads_the_baseline_answer_token_in_the_probe_top_five():
    baseline = tops([[7, 3, 1, 2, 4], [5, 6, 7, 8, 9]], [[0.6, 0.2, 0.1, 0.05, 0.05], [0.9] + [0.025] * 4],
                    [["cat", "dog", "a", "b", "c"], ["x"] * 5])
    dropped = tops([[3, 1, 7, 2, 4], [5, 6, 7, 8, 9]], [[0.5, 0.3, 0.125, 0.05, 0.025], [0.9] + [0.025] * 4])
    gone = tops([[3, 1, 2, 4, 8], [5, 6, 7, 8, 9]], [[0.5, 0.3, 0.1, 0.05, 0.05], [0.5] + [0.125] * 4])
    change = answer_change(baseline, dropped)
    assert (change.token_id, change.token, change.in_probe_top) == (7, "cat", True)
    assert change.baseline == pytest.approx(0.6) and change.probe == pytest.approx(0.125)
    assert probability_change(baseline, dropped) == pytest.approx(-0.475)
    assert probability_change(baseline, gone) == pytest.approx(-0.6) and not answer_change(baseline, gone).in_probe_top
    assert probability_change(baseline, baseline) == 0.0
    assert probability_change(baseline, gone, step=1) == pytest.approx(0.5 - 0.9)
    with pytest.raises(ValueError, match=r"step=2 must be an integer in \[0, 1\]"):
        probability_change(baseline, gone, step=2)
    with pytest.raises(ValueError, match="probe trace has no recorded top tokens"):
        probability_change(baseline, SimpleNamespace(top_token_ids=None, top_probs=None))


# ---- through generate on the tiny LLaVA (4 layers, 4 heads) ----

@pytest.fixture(scope="module")
def baseline(tiny_bundle, noise_image):
    return generate(tiny_bundle, noise_image, PROMPT, max_new_tokens=4)


def run(tiny_bundle, noise_image, intervention):
    return generate(tiny_bundle, noise_image, PROMPT, max_new_tokens=4, intervention=intervention)


def changed(trace, baseline) -> int:
    """How many recorded numbers differ from the baseline: top-5 ids and probabilities per step, captured attention."""
    steps = min(len(trace.top_probs), len(baseline.top_probs))
    count = int((trace.top_token_ids[:steps] != baseline.top_token_ids[:steps]).sum())
    count += int((trace.top_probs[:steps] != baseline.top_probs[:steps]).sum())
    if trace.attn_to_visual.shape == baseline.attn_to_visual.shape:
        count += int((trace.attn_to_visual != baseline.attn_to_visual).sum())
    else:
        count += 1
    return count


def identical(trace, baseline) -> bool:
    return (trace.answer == baseline.answer and np.array_equal(trace.top_token_ids, baseline.top_token_ids)
            and np.array_equal(trace.top_probs, baseline.top_probs)
            and np.array_equal(trace.attn_to_visual, baseline.attn_to_visual))


@pytest.mark.parametrize("kwargs", [{}, {"rows": "all", "score": "weights", "small_num_mask": 0.1}])
def test_spin_changes_the_run_and_keeping_every_head_is_the_baseline(tiny_bundle, noise_image, baseline, kwargs):
    spin = SPIN(routed_heads=0.5, **kwargs)
    trace = run(tiny_bundle, noise_image, spin)
    assert trace.settings["intervention"] == spin.settings()
    assert changed(trace, baseline) > 0
    if not kwargs:  # the code's rows: at prefill only the last prompt row is gated, the text rows before it are not
        before_last = trace.settings["prompt_queries"] - 1
        assert np.array_equal(trace.attn_to_visual[:, :, :before_last], baseline.attn_to_visual[:, :, :before_last])
    assert identical(run(tiny_bundle, noise_image, SPIN(routed_heads=1.0, **kwargs)), baseline)


def test_knockout_of_a_whole_layer_changes_the_run_and_of_none_is_the_baseline(tiny_bundle, noise_image, baseline):
    trace = run(tiny_bundle, noise_image, HeadKnockout([(1, head) for head in range(tiny_bundle.num_heads)]))
    assert changed(trace, baseline) > 0
    # layer 1's own attention is computed before its head outputs: layers 0–1 unchanged, layer 2 on changed
    assert np.array_equal(trace.attn_to_visual[:2], baseline.attn_to_visual[:2])
    assert (trace.attn_to_visual[2:] != baseline.attn_to_visual[2:]).any()
    assert identical(run(tiny_bundle, noise_image, HeadKnockout([])), baseline)
    change = answer_change(baseline, trace)
    assert change.token_id == int(baseline.top_token_ids[0, 0]) and -1.0 <= change.change <= 1.0


def test_bad_parameters_are_refused_through_generate(tiny_bundle, noise_image):
    with pytest.raises(ValueError, match=r"layer=4 must be an integer in \[0, 3\]"):
        run(tiny_bundle, noise_image, HeadKnockout([(4, 0)]))
    with pytest.raises(ValueError, match=r"head=4 in layer 0 must be an integer in \[0, 3\]"):
        run(tiny_bundle, noise_image, HeadKnockout([(0, 4)]))
    with pytest.raises(ValueError, match=r"start_layer=9 must be an integer in \[0, 3\]"):
        run(tiny_bundle, noise_image, SPIN(start_layer=9))
    with pytest.raises(ValueError, match=r"num_routed_heads=9 must be an integer in \[0, 4\]"):
        run(tiny_bundle, noise_image, SPIN(num_routed_heads=9))
