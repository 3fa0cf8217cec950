"""Image-centric head selection: visual mass and visual non-sink ratio r (paper §4.1)."""

import pytest
import torch

from var_core.heads import (attention_mass, image_centric, rho_margin_column, select_image_centric_heads,
                            visual_non_sink_ratio)

# keys: 0 BOS (text sink), 1 visual sink, 2-3 visual, 4 text
VISUAL = torch.tensor([[False, True, True, True, False]])
SINKS = torch.tensor([[True, True, False, False, False]])


def rows(*weights):
    return torch.tensor(weights, dtype=torch.float32)[None, :, None, :]  # one head per row, [1, H, 1, 5]


def test_ratio_counts_only_visual_sinks():
    attn = rows([0.3, 0.2, 0.3, 0.1, 0.1])
    assert torch.allclose(attention_mass(attn, VISUAL), torch.tensor([[[0.6]]]))
    assert torch.allclose(visual_non_sink_ratio(attn, VISUAL, SINKS), torch.tensor([[[0.4 / 0.6]]]))


def test_ratio_is_zero_without_visual_mass():
    attn = rows([0.5, 0.0, 0.0, 0.0, 0.5])
    assert visual_non_sink_ratio(attn, VISUAL, SINKS).item() == 0.0


def test_selection_needs_both_mass_and_ratio():
    attn = rows(
        [0.3, 0.2, 0.3, 0.1, 0.1],    # mass 0.6, r 0.67 → selected
        [0.85, 0.05, 0.05, 0.0, 0.05],  # mass 0.1 < 0.2 → not selected
        [0.2, 0.6, 0.1, 0.0, 0.1],    # mass 0.7, r 0.14 < 0.5 → sink-dominated
        [0.6, 0.1, 0.1, 0.0, 0.2],    # mass 0.2 exactly, r 0.5 exactly → selected (both ≥)
    )
    selected = select_image_centric_heads(attn, VISUAL, SINKS, rho=0.5, min_visual_mass=0.2)
    assert selected[0, :, 0].tolist() == [True, False, False, True]


def test_selection_is_per_query_row_and_batched():
    attn = torch.rand(3, 4, 6, 5).softmax(-1)
    visual = VISUAL.expand(3, 5)
    sinks = SINKS.expand(3, 5)
    batched = select_image_centric_heads(attn, visual, sinks, rho=0.3)
    single = torch.cat([select_image_centric_heads(attn[i:i + 1], visual[:1], sinks[:1], rho=0.3) for i in range(3)])
    assert batched.shape == (3, 4, 6) and torch.equal(batched, single)


@pytest.mark.parametrize("rho", [0.0, 0.3, 0.5, 0.9])
def test_rho_margin_rule_selects_the_same_rows_as_the_ratio_rule(rho):
    """The hook tests r ≥ ρ as Σ α·(non-sink − ρ·visual) ≥ 0 inside its masses matmul (no division)."""
    generator = torch.Generator().manual_seed(int(rho * 10))
    attn = torch.randn(2, 8, 16, 40, generator=generator).mul(3).softmax(-1)
    visual = torch.zeros(2, 40, dtype=torch.bool)
    visual[:, 5:30] = True
    sinks = torch.rand(2, 40, generator=generator) < 0.25
    margin = torch.matmul(attn, rho_margin_column(visual, visual & ~sinks, rho)[:, None, :, None])[..., 0]
    mass = attention_mass(attn, visual)
    fast = image_centric(mass, margin, min_visual_mass=0.2)
    reference = select_image_centric_heads(attn, visual, sinks, rho=rho, min_visual_mass=0.2)
    assert torch.equal(fast, reference)
    assert 0 < int(reference.sum()) < reference.numel()
