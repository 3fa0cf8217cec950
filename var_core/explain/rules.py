"""The arithmetic of the explanation maps, on tensors already taken from a forward pass (no model code here)."""

from __future__ import annotations

import torch


def normalised(values: torch.Tensor) -> torch.Tensor:
    """The positive part of `values`, scaled to sum to 1; all zeros when nothing is positive (the map says nothing)."""
    positive = values.float().clamp_min(0)
    total = positive.sum()
    return positive / total if total > 0 else positive


def head_mean_product(gradient: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
    """Chefer et al.'s Ā for one layer: mean over heads of (∇A ⊙ A)⁺, each head's product clipped before the mean.
    gradient, attention: [B, H, Q, K] → [Q, K] float32 (batch row 0)."""
    return (gradient[0].float() * attention[0].float()).clamp_min(0).mean(0)


def relevancy_row(products: list[torch.Tensor], row: int) -> torch.Tensor:
    """Row `row` of R = (I + Ā_L)…(I + Ā_1), the result of R ← R + Ā·R from R = I over layers 1 … L, without
    forming R: a row vector times each (I + Ā), from the last layer down. products: per layer Ā [T, T]."""
    vector = torch.zeros(products[0].shape[-1], dtype=torch.float32, device=products[0].device)
    vector[row] = 1.0
    for product in reversed(products):
        vector = vector + vector @ product
    return vector


def relative(question: torch.Tensor, generic: torch.Tensor, floor: float) -> torch.Tensor:
    """Attention under the question divided by attention under a generic prompt, element-wise, normalised: what
    both prompts attend to (sinks, position) cancels. The divisor is floored at `floor` × its mean, so a token the
    generic prompt ignores cannot dominate by division by almost zero."""
    divisor = generic.float().clamp_min(floor * float(generic.float().mean()))
    return normalised(question.float() / divisor)
