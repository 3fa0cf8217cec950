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


def non_sink_ratio(visual_mass: torch.Tensor, non_sink_mass: torch.Tensor) -> torch.Tensor:
    """r = Σ_{visual non-sink} α / Σ_{visual} α from the two masses; 0 (never NaN) where the visual mass is 0."""
    return non_sink_mass / visual_mass.clamp_min(torch.finfo(torch.float32).tiny)


def rho_margin_column(visual_mask: torch.Tensor, non_sink_mask: torch.Tensor, rho: float) -> torch.Tensor:
    """Key weights (float32) whose attention-weighted sum, Σ_{visual non-sink} α − rho·Σ_{visual} α, is ≥ 0 exactly
    when r ≥ rho in a row with visual mass: the ratio test without a division, so it rides in the masses matmul."""
    return non_sink_mask.float() - rho * visual_mask.float()


def image_centric(visual_mass: torch.Tensor, rho_margin: torch.Tensor, min_visual_mass: float) -> torch.Tensor:
    """The rule on precomputed masses: visual mass ≥ min_visual_mass AND r ≥ rho (as rho_margin ≥ 0), bool."""
    return (visual_mass >= min_visual_mass) & (rho_margin >= 0)


def head_statistics(attn: torch.Tensor, visual_mask: torch.Tensor, sink_mask: torch.Tensor):
    """(visual mass, visual non-sink ratio r, mass on all sinks), each [B, H, Q] float32, in one matmul.

    attn: [B, H, Q, K] post-softmax; visual_mask, sink_mask: [B, K] bool (sink_mask may include text sinks: only
    visual sinks count in r). r is 0 where the visual mass is 0, never NaN.
    """
    _key_mask(visual_mask, attn)  # shape check with a clear message
    _key_mask(sink_mask, attn)
    columns = torch.stack([visual_mask, visual_mask & ~sink_mask, sink_mask], dim=-1).float()  # [B, K, 3]
    masses = torch.matmul(attn.float(), columns[:, None])  # [B, H, Q, 3]
    total, non_sink, sinks = masses.unbind(-1)
    return total, non_sink_ratio(total, non_sink), sinks


def visual_non_sink_ratio(attn: torch.Tensor, visual_mask: torch.Tensor, sink_mask: torch.Tensor) -> torch.Tensor:
    """r = Σ_{visual non-sink} α / Σ_{visual} α, [B, H, Q] float32; 0 where the visual mass is 0.

    attn: [B, H, Q, K] post-softmax; visual_mask, sink_mask: [B, K] bool (sink_mask may include text sinks:
    only visual sinks count here).
    """
    return head_statistics(attn, visual_mask, sink_mask)[1]


def select_image_centric_heads(
    attn: torch.Tensor,
    visual_mask: torch.Tensor,
    sink_mask: torch.Tensor,
    rho: float,
    min_visual_mass: float = 0.2,
) -> torch.Tensor:
    """[B, H, Q] bool: the (head, query) rows with visual mass ≥ min_visual_mass AND r ≥ rho."""
    mass, ratio, _ = head_statistics(attn, visual_mask, sink_mask)
    return (mass >= min_visual_mass) & (ratio >= rho)
