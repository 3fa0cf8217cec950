"""VAR redistribution (paper Eq. 4–5): hand-computed cases, invariants, and a slow reference."""

import pytest
import torch

from var_core.redistribute import redistribute

# keys: 0 BOS (text sink), 1 visual sink, 2-3 visual non-sink, 4 text
VISUAL = torch.tensor([[False, True, True, True, False]])
SINKS = torch.tensor([[True, True, False, False, False]])
ROW = torch.tensor([[[[0.3, 0.2, 0.3, 0.1, 0.1]]]])
ALL = torch.ones(1, 1, 1, dtype=torch.bool)


def test_hand_computed_row_with_text_sinks_recycled():
    # sinks ×(1−0.4): 0.18, 0.12; Ω = 0.4·0.5 = 0.2 split 3:1 over keys 2, 3 → +0.15, +0.05
    out = redistribute(ROW, VISUAL, SINKS, ALL, p=0.4)
    assert torch.allclose(out, torch.tensor([[[[0.18, 0.12, 0.45, 0.15, 0.1]]]]), atol=1e-7)


def test_hand_computed_row_with_visual_sinks_only():
    # only key 1 is a sink: 0.12; Ω = 0.08 → +0.06, +0.02; BOS untouched
    out = redistribute(ROW, VISUAL, SINKS & VISUAL, ALL, p=0.4)
    assert torch.allclose(out, torch.tensor([[[[0.3, 0.12, 0.36, 0.12, 0.1]]]]), atol=1e-7)


def random_case(seed, batch=2, heads=3, queries=4, keys=12, dtype=torch.float32):
    generator = torch.Generator().manual_seed(seed)
    attn = torch.randn(batch, heads, queries, keys, generator=generator).mul(2).softmax(-1).to(dtype)
    visual = torch.zeros(batch, keys, dtype=torch.bool)
    visual[:, 2:9] = True
    sinks = torch.rand(batch, keys, generator=generator) < 0.3
    sinks[:, 0] = True
    head_mask = torch.rand(batch, heads, queries, generator=generator) < 0.6
    return attn, visual, sinks, head_mask


@pytest.mark.parametrize("p", [0.0, 0.3, 0.7, 1.0])
def test_row_sums_preserved(p):
    attn, visual, sinks, head_mask = random_case(1)
    out = redistribute(attn, visual, sinks, head_mask, p)
    assert torch.allclose(out.sum(-1), attn.sum(-1), atol=1e-6)


def test_p_zero_is_identity_bit_for_bit():
    attn, visual, sinks, head_mask = random_case(2)
    assert torch.equal(redistribute(attn, visual, sinks, head_mask, 0.0), attn)


def test_p_one_zeroes_sinks_in_selected_rows():
    attn, visual, sinks, head_mask = random_case(3)
    out = redistribute(attn, visual, sinks, head_mask, 1.0)
    sink_cols = sinks[:, None, None, :].expand_as(out)
    selected = head_mask[..., None].expand_as(out)
    assert out[sink_cols & selected].eq(0).all()


def test_unselected_heads_and_queries_are_bit_identical():
    attn, visual, sinks, head_mask = random_case(4)
    query_mask = torch.tensor([[True, False, True, False], [False, True, True, True]])
    out = redistribute(attn, visual, sinks, head_mask, 0.5, query_mask=query_mask)
    untouched = ~(head_mask & query_mask[:, None, :])
    assert torch.equal(out[untouched], attn[untouched])
    assert not torch.equal(out[~untouched], attn[~untouched])


def test_non_sink_text_tokens_are_bit_identical():
    attn, visual, sinks, head_mask = random_case(5)
    out = redistribute(attn, visual, sinks, head_mask, 0.5)
    text_non_sink = ~visual & ~sinks
    assert torch.equal(out[..., text_non_sink[0]][0], attn[..., text_non_sink[0]][0])


def test_row_without_visual_non_sink_mass_is_unchanged():
    attn = torch.tensor([[[[0.5, 0.5, 0.0, 0.0, 0.0]]]])  # only sinks have mass
    assert torch.equal(redistribute(attn, VISUAL, SINKS, ALL, 0.5), attn)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_input_keeps_dtype_and_matches_float32(dtype):
    attn, visual, sinks, head_mask = random_case(6, dtype=dtype)
    out = redistribute(attn, visual, sinks, head_mask, 0.4)
    reference = redistribute(attn.float(), visual, sinks, head_mask, 0.4)
    assert out.dtype == dtype
    assert torch.allclose(out.float(), reference, atol=1e-2)


def test_batched_equals_per_example():
    attn, visual, sinks, head_mask = random_case(7, batch=3)
    batched = redistribute(attn, visual, sinks, head_mask, 0.6)
    for b in range(3):
        single = redistribute(attn[b:b + 1], visual[b:b + 1], sinks[b:b + 1], head_mask[b:b + 1], 0.6)
        assert torch.equal(batched[b:b + 1], single)


def test_no_gradient_is_tracked():
    attn, visual, sinks, head_mask = random_case(8)
    out = redistribute(attn.requires_grad_(), visual, sinks, head_mask, 0.5)
    assert not out.requires_grad


@pytest.mark.parametrize("p", [-0.1, 1.5, float("nan")])
def test_p_out_of_range_raises(p):
    with pytest.raises(ValueError, match="p="):
        redistribute(ROW, VISUAL, SINKS, ALL, p)


def test_mismatched_mask_shape_raises_with_both_shapes():
    with pytest.raises(ValueError, match=r"visual_mask has shape \(1, 4\)"):
        redistribute(ROW, VISUAL[:, :4], SINKS, ALL, 0.5)


def slow_reference(attn, visual, sinks, head_mask, p, query_mask):
    """The paper's formulas with plain Python loops, one row at a time."""
    out = attn.clone()
    batch, heads, queries, keys = attn.shape
    for b in range(batch):
        for h in range(heads):
            for i in range(queries):
                if not (head_mask[b, h, i] and query_mask[b, i]):
                    continue
                row = [float(v) for v in attn[b, h, i]]
                receivers = [j for j in range(keys) if visual[b, j] and not sinks[b, j]]
                receiver_mass = sum(row[j] for j in receivers)
                if receiver_mass == 0:
                    continue
                budget = p * sum(row[j] for j in range(keys) if sinks[b, j])
                for j in range(keys):
                    if sinks[b, j]:
                        out[b, h, i, j] = (1 - p) * row[j]
                    elif j in receivers:
                        out[b, h, i, j] = row[j] + budget * row[j] / receiver_mass
    return out


@pytest.mark.parametrize("seed", range(5))
def test_vectorised_matches_slow_reference(seed):
    attn, visual, sinks, head_mask = random_case(10 + seed)
    query_mask = torch.rand(attn.shape[0], attn.shape[2], generator=torch.Generator().manual_seed(seed)) < 0.7
    p = 0.15 * (seed + 1)
    expected = slow_reference(attn, visual, sinks, head_mask, p, query_mask)
    assert torch.allclose(redistribute(attn, visual, sinks, head_mask, p, query_mask), expected, atol=1e-6)
