"""Visual attention sink detection: the sink-dimension value φ(x) (paper Eq. 1) and sink masks."""

from __future__ import annotations

import torch

RMS_EPS = 1e-6  # as the official DimProspector: rsqrt(mean(h²) + 1e-6)


def phi(hidden: torch.Tensor, sink_dims) -> torch.Tensor:
    """φ(x) = max_{d ∈ sink_dims} |x[d]| / RMS(x), in float32.

    hidden: [..., D] residual stream entering a decoder layer. Returns [...].
    RMS is over all D dims; an all-zero vector gives 0, never NaN.
    """
    dims = torch.as_tensor(list(sink_dims), dtype=torch.long, device=hidden.device)
    if dims.numel() == 0:
        raise ValueError("sink_dims is empty: give at least one sink dimension (see var_core.registry)")
    if int(dims.max()) >= hidden.shape[-1] or int(dims.min()) < 0:
        raise ValueError(f"sink_dims {dims.tolist()} out of range for hidden size {hidden.shape[-1]}")
    x = hidden.float()
    inv_rms = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + RMS_EPS)
    return (x.index_select(-1, dims) * inv_rms).abs().amax(-1)


def sink_mask(hidden: torch.Tensor, sink_dims, tau: float) -> torch.Tensor:
    """[B, T] bool, True where φ > τ (strict, as the official code) — text and visual tokens alike."""
    return phi(hidden, sink_dims) > tau


MAX_SINK_DIMS = 8  # discovery looks for the break among the strongest 8 dims (papers and releases list 1–3)


def discover_sink_dims(hidden_states, top_k: int | None = None) -> list[int]:
    """Find a model's sink dimensions: where massive activations concentrate.

    hidden_states: a sequence of [B, T, D] tensors (one per layer, e.g. `output_hidden_states`; each may sit on
    its own device when the model is split across GPUs) or one [L, B, T, D] / [B, T, D] tensor. Each token's
    |x|/RMS(x) is taken, and for every dimension we keep its largest value over tokens, per layer (on that layer's
    device; only the [D] result moves to the CPU); a dim is scored by the median of that over layers, so a dim must
    be massive in most layers (not one outlier). Returns the dims before the largest drop (ratio of consecutive
    scores) among the strongest MAX_SINK_DIMS + 1 — as many as the data shows — or, with `top_k`, the top_k dims;
    strongest first.
    """
    if isinstance(hidden_states, torch.Tensor):
        hidden_states = hidden_states if hidden_states.dim() == 4 else hidden_states.unsqueeze(0)
    per_layer = torch.stack([_largest_normalised(hidden).cpu() for hidden in hidden_states])  # [L, D]
    score = per_layer.median(0).values  # [D]
    if top_k is not None:
        return score.topk(min(top_k, score.numel())).indices.tolist()
    values, indices = score.topk(min(MAX_SINK_DIMS + 1, score.numel()))
    if len(values) < 2:
        return indices.tolist()
    drops = values[:-1] / values[1:].clamp_min(torch.finfo(values.dtype).tiny)
    return indices[: int(drops.argmax()) + 1].tolist()


def _largest_normalised(hidden: torch.Tensor) -> torch.Tensor:
    """[D] the largest |x|/RMS(x) of each dimension over all tokens of one layer's [B, T, D] hidden states."""
    x = hidden.float()
    return (x.abs() * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + RMS_EPS)).flatten(0, -2).amax(0)
