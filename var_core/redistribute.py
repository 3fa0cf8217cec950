"""Visual attention redistribution (paper §4.2, Eq. 4–5): recycle sink attention into the image."""

from __future__ import annotations

import torch


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

    weights = attn.float()
    sinks = sink_mask[:, None, None, :]
    receivers = (receiver_mask & ~sink_mask)[:, None, None, :]
    receiver_weights = torch.where(receivers, weights, 0.0)
    receiver_mass = receiver_weights.sum(-1, keepdim=True)
    budget = p * torch.where(sinks, weights, 0.0).sum(-1, keepdim=True)

    share = receiver_weights / receiver_mass.clamp_min(torch.finfo(torch.float32).tiny)
    updated = torch.where(sinks, weights * (1.0 - p), weights + budget * share)
    active = rows[..., None] & (receiver_mass > 0)
    return torch.where(active, updated.to(attn.dtype), attn)
