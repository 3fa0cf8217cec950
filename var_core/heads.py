"""Image-centric head selection (paper §4.1): heads that look at the image, and not at its sinks."""

from __future__ import annotations

import torch


def _key_mask(mask: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
    """[B, K] bool → [B, 1, 1, K] in attn's dtype, for masked row sums."""
    if mask.shape != (attn.shape[0], attn.shape[-1]):
        raise ValueError(f"mask shape {tuple(mask.shape)} does not match attention [B, H, Q, K] = {tuple(attn.shape)}")
    return mask[:, None, None, :].to(attn.dtype)


def attention_mass(attn: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
    """Σ_{j ∈ key_mask} α_ij, e.g. the visual mass. attn: [B, H, Q, K]; key_mask: [B, K]. Returns [B, H, Q] float32."""
    return (attn.float() * _key_mask(key_mask, attn.float())).sum(-1)


def visual_non_sink_ratio(attn: torch.Tensor, visual_mask: torch.Tensor, sink_mask: torch.Tensor) -> torch.Tensor:
    """r = Σ_{visual non-sink} α / Σ_{visual} α, [B, H, Q] float32; 0 where the visual mass is 0.

    attn: [B, H, Q, K] post-softmax; visual_mask, sink_mask: [B, K] bool (sink_mask may include text sinks:
    only visual sinks count here).
    """
    total = attention_mass(attn, visual_mask)
    non_sink = attention_mass(attn, visual_mask & ~sink_mask)
    return torch.where(total > 0, non_sink / total.clamp_min(torch.finfo(torch.float32).tiny), torch.zeros_like(total))


def select_image_centric_heads(
    attn: torch.Tensor,
    visual_mask: torch.Tensor,
    sink_mask: torch.Tensor,
    rho: float,
    min_visual_mass: float = 0.2,
) -> torch.Tensor:
    """[B, H, Q] bool: the (head, query) rows with visual mass ≥ min_visual_mass AND r ≥ rho."""
    mass = attention_mass(attn, visual_mask)
    return (mass >= min_visual_mass) & (visual_non_sink_ratio(attn, visual_mask, sink_mask) >= rho)
