"""Visual attention redistribution (paper §4.2, Eq. 4–5): recycle sink attention into the image.

The update is a per-row rescaling: α ← α + α·δ, with δ = −p on sink keys, p·Σ_sinks α / Σ_receivers α on receiver
keys and 0 elsewhere. δ factors into per-row coefficients (`row_coefficients`, from masses the caller already has:
the hook gets them from the head statistics it computes anyway) times per-key constants (`key_deltas`, built once
per layer), so `rescale_` is one small matmul and one in-place update; unselected rows get δ = 0 exactly and stay
bit-identical.
"""

from __future__ import annotations

import torch


def key_deltas(sink_mask: torch.Tensor, receiver_mask: torch.Tensor, p: float) -> torch.Tensor:
    """[B, 2, K] float32 per-key constants: (−p on sinks, p on receivers), the rows that multiply a row's
    (receiver mass, sink mass) / receiver mass; a sink never receives."""
    return torch.stack([sink_mask * -p, (receiver_mask & ~sink_mask) * p], dim=1).float()


def row_coefficients(masses: torch.Tensor, receivers: int, active: torch.Tensor) -> torch.Tensor:
    """Every mass of a row divided by its receiver mass (masses[..., receivers]) on `active` rows (bool [..., 1]: the
    rows to redistribute, each with receiver mass > 0), 0 on every other row (left bit-identical). With the
    deltas of `key_deltas` placed at the receiver and recycled-sink columns, this gives δ = −p on sinks and
    p·Σ_sinks α / Σ_receivers α on receivers. When a gradient is taken through VAR (`var_core.explain`), inactive
    rows divide by 1 instead of their (maybe zero) receiver mass, so no NaN reaches it; inference skips that op."""
    divisor = masses[..., receivers:receivers + 1]
    if masses.requires_grad:
        divisor = torch.where(active, divisor, 1.0)
    return torch.where(active, masses / divisor, 0.0)


def rescale_(attn: torch.Tensor, coefficients: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
    """attn [B, H, Q, K] += attn · δ in place, δ = coefficients [B, H, Q, C] @ deltas [C, K] or [B, 1, C, K];
    δ in float32, stored in attn's dtype."""
    return attn.addcmul_(attn, torch.matmul(coefficients, deltas))


@torch.no_grad()
def redistribute(
    attn: torch.Tensor,
    visual_mask: torch.Tensor,
    sink_mask: torch.Tensor,
    head_mask: torch.Tensor,
    p: float,
    query_mask: torch.Tensor | None = None,
    *,
    receiver_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Return attention with a fraction p of the sink weights moved onto visual non-sink tokens.

    attn: [B, H, Q, K] post-softmax. visual_mask, sink_mask: [B, K] bool; every sink column (text sinks too,
    unless the caller passes `sink_mask & visual_mask`) is scaled by 1−p. head_mask: [B, H, Q] bool, the rows to
    modify; query_mask: [B, Q] bool, default all queries. The freed budget Ω = p·Σ_sinks α goes to
    `visual_mask & ~sink_mask` in proportion to their weights, so row sums are preserved. receiver_mask: [B, K] bool,
    other receivers instead (e.g. text tokens, paper Table 5 ablation); sinks never receive. Rows not selected, and
    rows with no visual non-sink mass, are returned bit-identical. Computed in float32, returned in attn's dtype.
    """
    if not (isinstance(p, (int, float)) and 0.0 <= p <= 1.0):
        raise ValueError(f"p={p!r} must be in [0, 1]: it is the fraction of sink attention that is moved")
    batch, heads, queries, keys = attn.shape
    receiver_mask = visual_mask if receiver_mask is None else receiver_mask
    for name, mask, shape in (("visual_mask", visual_mask, (batch, keys)), ("sink_mask", sink_mask, (batch, keys)),
                              ("receiver_mask", receiver_mask, (batch, keys)),
                              ("head_mask", head_mask, (batch, heads, queries))):
        if tuple(mask.shape) != shape:
            raise ValueError(f"{name} has shape {tuple(mask.shape)}, expected {shape} for attention {tuple(attn.shape)}")
    rows = head_mask if query_mask is None else head_mask & query_mask[:, None, :]
    receivers = receiver_mask & ~sink_mask
    columns = torch.stack([receivers, sink_mask], dim=-1).float()[:, None]  # [B, 1, K, 2]
    masses = torch.matmul(attn.float(), columns)  # (receiver mass, sink mass) per row
    coefficients = row_coefficients(masses, 0, (rows & (masses[..., 0] > 0))[..., None])
    return rescale_(attn.clone(), coefficients, key_deltas(sink_mask, receivers, p)[:, None])
