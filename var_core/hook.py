"""The attention hook: eager attention + (optionally) VAR + capture, installed for one run only.

One function is registered with transformers' `AttentionInterface` (and the matching causal mask with
`AttentionMaskInterface`, without which transformers passes no mask at all). Which run it serves comes from a
`ContextVar` set inside `attention_hook(...)`, so concurrent or consecutive runs never share sink positions.
Sinks come from the residual stream entering each decoder layer (a forward pre-hook), at prefill only;
decode steps reuse them, as the official code does.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import torch
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface, eager_mask
from transformers.models.llama.modeling_llama import repeat_kv

from var_core.config import VARConfig
from var_core.heads import head_statistics
from var_core.redistribute import redistribute
from var_core.sink import phi

ATTENTION_NAME = "var_eager"


@dataclass
class LayerRecord:
    """What one layer's attention produced for the captured query rows (lists of per-call chunks)."""

    attn_to_visual: list[torch.Tensor] = field(default_factory=list)  # [H, Q, N_vis] as used by the model
    attn_to_visual_raw: list[torch.Tensor] = field(default_factory=list)  # [H, Q, N_vis] before VAR
    visual_mass: list[torch.Tensor] = field(default_factory=list)  # [H, Q]
    sink_mass: list[torch.Tensor] = field(default_factory=list)  # [H, Q] mass on all sink tokens
    ratio: list[torch.Tensor] = field(default_factory=list)  # [H, Q] visual non-sink ratio r
    selected: list[torch.Tensor] = field(default_factory=list)  # [H, Q] image-centric head rows


@dataclass
class RunState:
    """Everything one run's hook needs and produces; created per request, never shared.

    visual_mask: [B, T_prompt] bool, every image token (VAR's I_vis). query_start: first prompt position whose
    query rows VAR/capture act on (the text after the image); every decode step is acted on too.
    grid_positions: the visual tokens drawn as the heatmap grid, raster order (default: all visual tokens).
    mask_positions: [N] prompt key positions whose attention is removed (−∞ before the softmax) for every query
    row VAR acts on (the text after the image, and decoding) in every layer — paper Fig. 3b; None = no masking.
    """

    visual_mask: torch.Tensor
    query_start: int
    sink_dims: tuple[int, ...]
    tau: float
    selection: VARConfig  # rho / min_visual_mass used to rank heads (also in baseline runs)
    var: VARConfig | None = None
    grid_positions: torch.Tensor | None = None  # [N_grid] token indices whose attention is captured
    var_layers: frozenset[int] = frozenset()
    capture: bool = True
    profile_layer: int | None = None
    mask_positions: torch.Tensor | None = None
    sink_masks: dict[int, torch.Tensor] = field(default_factory=dict)  # layer → [B, T_prompt]
    phi: dict[int, torch.Tensor] = field(default_factory=dict)  # layer → [B, T_prompt]
    profile_hidden: torch.Tensor | None = None  # [B, T_prompt, D] at profile_layer
    layers: dict[int, LayerRecord] = field(default_factory=dict)


_ACTIVE_RUN: ContextVar[RunState | None] = ContextVar("var_active_run", default=None)


def _pad_keys(mask: torch.Tensor, keys: int) -> torch.Tensor:
    """Extend a [B, T_prompt] key mask with False for generated tokens, to [B, keys]."""
    extra = keys - mask.shape[1]
    return mask if extra <= 0 else torch.nn.functional.pad(mask, (0, extra), value=False)


def _record_sinks(state: RunState, layer: int, hidden: torch.Tensor) -> None:
    """Prefill pre-hook body: φ and sink mask of every prompt token entering `layer`."""
    values = phi(hidden, state.sink_dims)
    state.phi[layer] = values.cpu()
    state.sink_masks[layer] = (values > state.tau).cpu()
    if layer == state.profile_layer:
        state.profile_hidden = hidden.detach().float()


def _sink_pre_hook(layer: int):
    def hook(module, args, kwargs):
        state = _ACTIVE_RUN.get()
        if state is not None and layer not in state.sink_masks:
            hidden = args[0] if args else kwargs["hidden_states"]
            _record_sinks(state, layer, hidden)
    return hook


def _apply_var_and_capture(state: RunState, layer: int, weights: torch.Tensor) -> torch.Tensor:
    """VAR on the selected rows of this layer (if active), and capture of the text→visual rows."""
    acting = state.var is not None and layer in state.var_layers
    layer_sinks = state.sink_masks.get(layer)
    all_heads = acting and not state.var.select_heads  # ablation: acts even without visual sinks
    if not state.capture and not all_heads and (not acting or layer_sinks is None
                                                 or not (layer_sinks & state.visual_mask).any()):
        return weights  # nothing to record and nothing to redistribute: plain eager attention
    batch, _, queries, keys = weights.shape
    device = weights.device  # layers may sit on different GPUs with device_map="auto"
    visual = _pad_keys(state.visual_mask.to(device), keys)
    sinks = _pad_keys((layer_sinks if layer_sinks is not None else torch.zeros_like(state.visual_mask)).to(device),
                      keys)
    positions = torch.arange(keys - queries, keys, device=weights.device)
    query_mask = (positions >= state.query_start).expand(batch, queries)
    visual_sinks = sinks & visual
    has_visual_sink = visual_sinks.any(-1)  # official: a layer without visual sinks selects nothing
    mass, ratio, sink_mass = head_statistics(weights, visual, sinks)
    selected = (mass >= state.selection.min_visual_mass) & (ratio >= state.selection.rho)
    selected &= has_visual_sink[:, None, None] & query_mask[:, None, :]

    new_weights = weights
    if acting:
        recycled = sinks if state.var.recycle_text_sinks else visual_sinks
        rows = query_mask[:, None, :].expand_as(selected) if all_heads else selected
        receivers = None if state.var.budget_to == "visual" else ~visual & ~sinks  # "text": text non-sink tokens
        new_weights = redistribute(weights, visual, recycled, rows, state.var.p, query_mask, receiver_mask=receivers)

    first_row = max(0, state.query_start - (keys - queries))  # captured rows are the contiguous tail
    if state.capture and first_row < queries:
        grid = state.grid_positions
        if grid is None:
            grid = state.visual_mask[0].nonzero().flatten()
        grid = grid.to(device)
        record = state.layers.setdefault(layer, LayerRecord())
        record.attn_to_visual.append(new_weights[0, :, first_row:].index_select(-1, grid).float().cpu())
        if state.var is not None:
            record.attn_to_visual_raw.append(weights[0, :, first_row:].index_select(-1, grid).float().cpu())
        record.visual_mass.append(mass[0, :, first_row:].cpu())
        record.sink_mass.append(sink_mass[0, :, first_row:].cpu())
        record.ratio.append(ratio[0, :, first_row:].cpu())
        record.selected.append(selected[0, :, first_row:].cpu())
    return new_weights


def _mask_keys(state: RunState, scores: torch.Tensor) -> torch.Tensor:
    """Pre-softmax scores [B, H, Q, K] with `state.mask_positions` set to the dtype's minimum for the query rows
    at or after `query_start` (the rows before, image included, are untouched)."""
    queries, keys = scores.shape[-2:]
    rows = torch.arange(keys - queries, keys, device=scores.device) >= state.query_start
    columns = torch.zeros(keys, dtype=torch.bool, device=scores.device)
    columns[state.mask_positions.to(scores.device)] = True
    return scores.masked_fill(rows[:, None] & columns[None, :], torch.finfo(scores.dtype).min)


def var_attention_forward(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    """Eager attention (same contract as transformers' `eager_attention_forward`) with VAR + capture."""
    key_states = repeat_kv(key, module.num_key_value_groups)
    value_states = repeat_kv(value, module.num_key_value_groups)
    weights = torch.matmul(query, key_states.transpose(2, 3)) * scaling
    if attention_mask is not None:
        weights = weights + attention_mask[:, :, :, : key_states.shape[-2]]
    state = _ACTIVE_RUN.get()
    if state is not None and state.mask_positions is not None:
        weights = _mask_keys(state, weights)
    weights = torch.nn.functional.softmax(weights, dim=-1, dtype=torch.float32).to(query.dtype)

    if state is not None:
        weights = _apply_var_and_capture(state, module.layer_idx, weights)

    weights = torch.nn.functional.dropout(weights, p=dropout, training=module.training)
    output = torch.matmul(weights, value_states).transpose(1, 2).contiguous()
    return output, weights


AttentionInterface.register(ATTENTION_NAME, var_attention_forward)
AttentionMaskInterface.register(ATTENTION_NAME, eager_mask)


@contextmanager
def attention_hook(model: torch.nn.Module, decoder_layers, state: RunState):
    """Route the text model's attention through the hook for the duration of one run, then restore it."""
    text_config = model.config.get_text_config()
    previous = text_config._attn_implementation
    handles = [layer.register_forward_pre_hook(_sink_pre_hook(index), with_kwargs=True)
               for index, layer in enumerate(decoder_layers)]
    token = _ACTIVE_RUN.set(state)
    try:
        model.set_attn_implementation({"text_config": ATTENTION_NAME})
        yield state
    finally:
        _ACTIVE_RUN.reset(token)
        for handle in handles:
            handle.remove()
        model.set_attn_implementation({"text_config": previous})
