"""The attention hook: explicit attention + (optionally) VAR + capture, installed for one run only.

One function is registered with transformers' `AttentionInterface` (and the matching causal mask with
`AttentionMaskInterface`, without which transformers passes no mask at all). Which run it serves comes from a
`ContextVar` set inside `attention_hook(...)`, so concurrent or consecutive runs never share sink positions.
Sinks come from the residual stream entering each decoder layer (a forward pre-hook), at prefill only;
decode steps reuse them, as the official code does.

Numerics: scores and softmax are computed in float32 whatever the model's dtype (Qwen2-family q/k biases overflow
float16 when QK^T is formed in the model's dtype, as transformers' eager path does), then cast back for the product
with V; in a float32 model this is exactly the eager path. Layers where neither VAR nor capture acts (and nothing
observes) run transformers' `sdpa` kernel instead. Attention arguments that change the result and that the hook does
not implement (`s_aux`, `softcap`, …) are refused (`UnsupportedAttention`), never dropped.

Cost: per layer call, one matmul of the rows after the image with six per-key columns gives the masses that head
selection, VAR and capture share; VAR then rescales those rows in place. Nothing is read back to the host while
decoding (on CUDA the device never waits for Python): the only reads are at prefill (the grid's positions once,
then per layer: does it have visual sinks? its largest visual φ?) and the copy of the captured slices when the run
ends (`run.generate`).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
import math

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, eager_mask
from transformers.models.llama.modeling_llama import repeat_kv

from var_core.config import VARConfig
from var_core.heads import rho_margin_column
from var_core.interventions.base import Intervention, Site
from var_core.limits import Deadline
from var_core.redistribute import key_deltas, rescale_, row_coefficients
from var_core.sink import phi

ATTENTION_NAME = "var_eager"
TINY = torch.finfo(torch.float32).tiny  # the least receiver mass VAR divides by


# The masses one matmul gives per acted-on row (the last axis of LayerRecord.masses), in this order:
MASS_COLUMNS = ("visual", "rho_margin", "receivers", "recycled", "visual_non_sink", "sinks")
VISUAL, RHO_MARGIN, RECEIVERS, RECYCLED, NON_SINK, SINKS = range(len(MASS_COLUMNS))
VISUAL_SINK = 3  # the key kind `visual + 2·sink` of a visual sink (RunKeys)
CAPTURE_DTYPE = torch.float16  # captured attention (probabilities in [0, 1]: ~3 significant digits) at half the bytes

# Attention-interface arguments that do not change what the hook computes: caching and position bookkeeping, facts
# already in the mask transformers builds (sliding windows, causality), and model inputs that transformers forwards
# down to every layer (InternVL's image_sizes, output flags). Packed-sequence arguments (cu_seq_lens_*) are not here.
HARMLESS_ARGUMENTS = frozenset({"position_ids", "cache_position", "past_key_values", "past_key_value", "use_cache",
                                "output_attentions", "output_hidden_states", "output_router_logits", "return_dict",
                                "position_embeddings", "sliding_window", "is_causal", "image_sizes",
                                "num_items_in_batch", "logits_to_keep"})  # the last: LM-head only (LLaVA-OneVision)
# Arguments that change the attention and that the hook does not implement, with what they are.
UNSUPPORTED_ARGUMENTS = {"s_aux": "learned attention sinks (gpt-oss style)",
                         "softcap": "attention-logit soft-capping (Gemma-2 style)",
                         "position_bias": "an additive position bias", "sinks": "learned attention sinks"}


class UnsupportedAttention(ValueError):
    """The model passes its attention an argument the hook does not implement: tracing it would be wrong."""


@dataclass
class LayerRecord:
    """What one layer's attention produced for the captured query rows: per-call chunks, kept on the layer's
    device until the run ends, so capturing never waits for the device while decoding."""

    attn_to_visual: list[torch.Tensor] = field(default_factory=list)  # [H, Q, N_grid] as used, CAPTURE_DTYPE
    attn_to_visual_raw: list[torch.Tensor] = field(default_factory=list)  # [H, Q, N_grid] before VAR, CAPTURE_DTYPE
    masses: list[torch.Tensor] = field(default_factory=list)  # [H, Q, len(MASS_COLUMNS)] float32, before VAR


@dataclass
class RunKeys:
    """What every layer of a run shares, built once per run and device: per key kind (text, visual non-sink, text
    sink, visual sink: `visual + 2·sink`) the mass columns and VAR deltas, so a layer's per-key data is one table
    lookup of its kinds; the floors of the rows VAR acts on; and where the grid's keys are."""

    columns: torch.Tensor  # [4, 6] float32 in MASS_COLUMNS order
    deltas: torch.Tensor  # [4, 6]: −p on the receivers column for recycled sinks, p on the recycled column for receivers
    floors: torch.Tensor  # [6] the least masses of a row VAR acts on
    grid: torch.Tensor | slice  # the grid's key positions; a slice when consecutive (LLaVA-style image tokens)

    def grid_columns(self, rows: torch.Tensor) -> torch.Tensor:
        """A CAPTURE_DTYPE copy of rows [..., K] at the grid's keys (copying a slice is ~25× cheaper than gathering
        2,880 columns)."""
        if isinstance(self.grid, slice):
            return rows[..., self.grid].to(CAPTURE_DTYPE, copy=True)
        return rows.index_select(-1, self.grid).to(CAPTURE_DTYPE)


@dataclass
class LayerPlan:
    """One layer's per-key data, built once from its prefill sink mask and reused at every call of the run.

    kinds: [capacity] each key's kind (generated keys are text non-sinks); columns: [capacity, 6] float32 key weights
    in MASS_COLUMNS order (one matmul gives every mass that head selection, VAR and capture need); deltas:
    [6, capacity] VAR's per-key constants, so δ = row_coefficients(masses) @ deltas. Both are sliced to each call's
    key count and regrown when decoding outgrows them. has_visual_sinks: whether an image token is a sink here
    (else nothing is selected).
    """

    kinds: torch.Tensor
    shared: RunKeys
    has_visual_sinks: bool
    columns: torch.Tensor = field(init=False)
    deltas: torch.Tensor = field(init=False)

    def __post_init__(self):
        self.columns = self.shared.columns[self.kinds]
        self.deltas = self.shared.deltas[self.kinds].T

    def for_keys(self, keys: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(columns, deltas) for `keys` keys, as views; doubles the capacity when decoding outgrows it."""
        if keys > len(self.kinds):
            self.kinds = torch.nn.functional.pad(self.kinds, (0, max(keys, 2 * len(self.kinds)) - len(self.kinds)))
            self.__post_init__()
        return self.columns[:keys], self.deltas[:, :keys]


@dataclass
class RunState:
    """Everything one run's hook needs and produces; created per request (batch 1), never shared.

    visual_mask: [1, T_prompt] bool, every image token (VAR's I_vis). query_start: first prompt position whose
    query rows VAR/capture act on (the text after the image); every decode step is acted on too.
    grid_positions: the visual tokens drawn as the heatmap grid, raster order (default: all visual tokens).
    mask_positions: [N] prompt key positions whose attention is removed (−∞ before the softmax) for every query
    row VAR acts on (the text after the image, and decoding) in every layer — paper Fig. 3b; None = no masking.
    phi, sink_masks, profile_hidden and the records stay on the model's device until `run.generate` collects them.
    capture_layers: the layers whose text→visual attention is captured (None = all; only with `capture`).
    observe: called as observe(layer, weights) with every layer call's attention [1, H, Q, K] float32 as the model
    uses it (after VAR), for callers that need more than the capture (`var_core.explain`).
    attention_gradient: when set and autograd tracks the attention, each layer's attention is recomputed in the
    backward pass instead of being kept (`_RecomputedAttention`), and attention_gradient(layer, weights, gradient)
    receives that layer's [1, H, T, T] attention and its gradient there, one layer at a time.
    deadline: checked at every attention call, forward and backward (`var_core.limits`): a stopped or overdue
    request ends within one layer.
    intervention: another method or a causal probe (`var_core.interventions`), called at the stages it acts at:
    the pre-softmax scores and the per-head outputs of the layers it names (None: none).
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
    capture_layers: frozenset[int] | None = None
    model_name: str = "this model"
    profile_layer: int | None = None  # the layer with the largest visual φ at prefill so far
    profile_phi: float = -math.inf  # that φ
    mask_positions: torch.Tensor | None = None
    sink_masks: dict[int, torch.Tensor] = field(default_factory=dict)  # layer → [1, T_prompt]
    phi: dict[int, torch.Tensor] = field(default_factory=dict)  # layer → [1, T_prompt]
    profile_hidden: torch.Tensor | None = None  # [1, T_prompt, D] at profile_layer
    plans: dict[int, LayerPlan] = field(default_factory=dict)
    shared: dict[torch.device, RunKeys] = field(default_factory=dict)
    layers: dict[int, LayerRecord] = field(default_factory=dict)
    observe: Callable[[int, torch.Tensor], None] | None = None
    attention_gradient: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None
    deadline: Deadline | None = None
    intervention: Intervention | None = None
    first_visual: int = field(init=False)  # the first image token's position (system-prompt keys lie before it)

    def captures(self, layer: int) -> bool:
        """Whether this run records `layer`'s text→visual attention."""
        return self.capture and (self.capture_layers is None or layer in self.capture_layers)

    def explicit(self, layer: int) -> bool:
        """Whether `layer` needs explicit attention weights (VAR, capture, masking or an observer), else sdpa runs."""
        return (self.captures(layer) or (self.var is not None and layer in self.var_layers)
                or self.mask_positions is not None or self.observe is not None
                or self.attention_gradient is not None or self.intervenes(layer))

    def intervenes(self, layer: int) -> bool:
        """Whether the run's intervention changes `layer`'s scores or head outputs."""
        method = self.intervention
        return method is not None and (method.acts_on_scores(layer) or method.acts_on_heads(layer))

    def __post_init__(self):
        if self.visual_mask.dim() != 2 or self.visual_mask.shape[0] != 1:
            raise ValueError(f"visual_mask has shape {tuple(self.visual_mask.shape)}: the hook traces one request "
                             "at a time, [1, T_prompt]")
        image = self.visual_mask[0].nonzero()
        self.first_visual = int(image[0]) if len(image) else 0  # one read, when the run is set up


_ACTIVE_RUN: ContextVar[RunState | None] = ContextVar("var_active_run", default=None)


def _record_sinks(state: RunState, layer: int, hidden: torch.Tensor) -> None:
    """Prefill pre-hook body: φ and sink mask of every prompt token entering `layer` (left on the device), and the
    hidden state entering the layer with the largest visual φ so far (the massive-activation profile). Detached:
    the run state must hold no autograd graph (a graph that reaches the state through `_RecomputedAttention` is a
    reference cycle Python cannot collect)."""
    hidden = hidden.detach()
    values = phi(hidden, state.sink_dims)
    state.phi[layer] = values
    state.sink_masks[layer] = values > state.tau
    grid = state.grid_positions if state.grid_positions is not None else state.visual_mask[0].nonzero().flatten()
    if len(grid):
        peak = float(values[0, grid].max())  # one read per layer, at prefill
        if peak > state.profile_phi:  # strict: the first layer where the largest visual φ appears
            state.profile_hidden, state.profile_layer, state.profile_phi = hidden.float(), layer, peak


def _sink_pre_hook(layer: int):
    def hook(module, args, kwargs):
        state = _ACTIVE_RUN.get()
        if state is not None and layer not in state.sink_masks:
            hidden = args[0] if args else kwargs["hidden_states"]
            _record_sinks(state, layer, hidden)
    return hook


def _run_keys(state: RunState, device: torch.device) -> RunKeys:
    """The run's RunKeys on `device`. Reads the grid's positions to the host, once per run."""
    var = state.var or state.selection
    visual, sinks = torch.tensor([False, True, False, True]), torch.tensor([False, False, True, True])
    non_sink = visual & ~sinks
    recycled = sinks if var.recycle_text_sinks else sinks & visual
    receivers = non_sink if var.budget_to == "visual" else ~visual & ~sinks
    columns = torch.stack([visual.float(), rho_margin_column(visual, non_sink, state.selection.rho),
                           receivers.float(), recycled.float(), non_sink.float(), sinks.float()], dim=-1)
    deltas = torch.zeros_like(columns)
    deltas[:, RECEIVERS:RECYCLED + 1] = key_deltas(recycled[None], receivers[None], var.p)[0].T
    # a row is redistributed when its masses reach these floors: the image-centric rule (paper §4.1: visual mass and
    # ρ margin; not without head selection) and some receiver mass
    floors = torch.full((len(MASS_COLUMNS),), -math.inf)
    floors[RECEIVERS] = TINY
    if var.select_heads:
        floors[VISUAL], floors[RHO_MARGIN] = state.selection.min_visual_mass, 0.0
    grid = state.grid_positions if state.grid_positions is not None else state.visual_mask[0].nonzero().flatten()
    first, count = int(grid[0]), len(grid)
    consecutive = grid.tolist() == list(range(first, first + count))
    return RunKeys(columns=columns.to(device), deltas=deltas.to(device), floors=floors.to(device),
                   grid=slice(first, first + count) if consecutive else grid.to(device))


def _build_plan(state: RunState, layer: int, device: torch.device) -> LayerPlan:
    """The layer's key data on the layer's device (layers may sit on different GPUs). Its one host
    synchronisation, once per layer per run, is reading whether the layer has visual sinks."""
    if device not in state.shared:
        state.shared[device] = _run_keys(state, device)
    prompt = state.visual_mask.shape[1]
    kinds = torch.zeros(2 * prompt, dtype=torch.long, device=device)  # room for decoding without regrowing
    kinds[:prompt] = state.visual_mask[0].to(device) + 2 * state.sink_masks[layer][0].to(device)
    return LayerPlan(kinds=kinds, shared=state.shared[device], has_visual_sinks=bool((kinds == VISUAL_SINK).any()))


def _apply_var_and_capture(state: RunState, layer: int, weights: torch.Tensor, record: bool = True) -> torch.Tensor:
    """VAR (in place) on the selected rows of this layer if it acts here, and, when `record`, capture of the
    text→visual rows (a recomputation in the backward pass redistributes again but records nothing).

    Only the rows after the image are touched (at prefill the text after it, at decode the new token); one
    matmul gives the masses that selection, redistribution and capture share.
    """
    acting = state.var is not None and layer in state.var_layers
    capturing = record and state.captures(layer)
    if not (capturing or acting):
        return weights  # nothing to record and nothing to redistribute: plain eager attention
    plan = state.plans.get(layer)
    if plan is None:
        plan = state.plans[layer] = _build_plan(state, layer, weights.device)
    redistributing = acting and (plan.has_visual_sinks or not state.var.select_heads)  # the ablation acts anyway
    queries, keys = weights.shape[-2:]
    first_row = max(0, state.query_start - (keys - queries))  # acted-on rows are the contiguous tail
    if first_row >= queries or not (capturing or redistributing):
        return weights
    rows = weights[:, :, first_row:] if first_row else weights
    columns, deltas = plan.for_keys(keys)
    masses = torch.matmul(rows, columns)  # [1, H, Q, 6] float32, before VAR
    if capturing:
        record = state.layers.get(layer) or state.layers.setdefault(layer, LayerRecord())
        record.masses.append(masses[0])
        captured = plan.shared.grid_columns(rows[0])
        if state.var is not None:
            record.attn_to_visual_raw.append(captured)
    if redistributing:
        active = (masses >= plan.shared.floors).all(-1, keepdim=True)
        coefficients = row_coefficients(masses, RECEIVERS, active)
        if rows.requires_grad:  # autograd keeps softmax's output for its backward: redistribute out of place
            rows = rows.addcmul(rows, torch.matmul(coefficients, deltas))
            weights = torch.cat([weights[:, :, :first_row], rows], dim=2)
        else:
            rescale_(rows, coefficients, deltas)
        if capturing:
            captured = plan.shared.grid_columns(rows[0])
    if capturing:
        record.attn_to_visual.append(captured)
    return weights


def _mask_keys(state: RunState, scores: torch.Tensor) -> torch.Tensor:
    """Pre-softmax scores [B, H, Q, K] with `state.mask_positions` set to the dtype's minimum for the query rows
    at or after `query_start` (the rows before, image included, are untouched)."""
    queries, keys = scores.shape[-2:]
    rows = torch.arange(keys - queries, keys, device=scores.device) >= state.query_start
    columns = torch.zeros(keys, dtype=torch.bool, device=scores.device)
    columns[state.mask_positions.to(scores.device)] = True
    return scores.masked_fill(rows[:, None] & columns[None, :], torch.finfo(scores.dtype).min)


def _site(state: RunState, layer: int, queries: int, keys: int, device: torch.device) -> Site:
    """Where this attention call is, for the intervention: acted-on rows, image keys, system-prompt keys."""
    prompt = state.visual_mask.shape[1]
    visual = torch.zeros(keys, dtype=torch.bool, device=device)
    visual[:min(keys, prompt)] = state.visual_mask[0, :keys].to(device)
    positions = torch.arange(keys, device=device)
    return Site(layer=layer, rows=positions[keys - queries:] >= state.query_start, visual=visual,
                system=positions < state.first_visual)


def _refuse_unsupported(state: RunState, module, arguments: dict) -> None:
    """Raise `UnsupportedAttention` for an argument in use (not None) that changes the attention and is not
    implemented here, naming the model and the argument."""
    for name, value in arguments.items():
        if value is None or name in HARMLESS_ARGUMENTS:
            continue
        what = UNSUPPORTED_ARGUMENTS.get(name, "an argument the VAR hook does not know")
        raise UnsupportedAttention(
            f"{state.model_name} passes `{name}` ({what}) to its attention ({type(module).__name__}); the VAR hook "
            "does not implement it, so traced attention would be wrong. This model cannot be traced.")


def _attend(state: RunState, module, query, key, value, attention_mask, scaling: float, record: bool):
    """softmax(QKᵀ·scaling + mask) in float32, VAR (and, when `record`, capture and observation), then ·V in the
    value's dtype. Returns (output [B, Q, H, D], weights [B, H, Q, K] float32 as used)."""
    key_states = repeat_kv(key, module.num_key_value_groups)
    value_states = repeat_kv(value, module.num_key_value_groups)
    scores = torch.matmul(query.float(), key_states.float().transpose(2, 3)).mul_(scaling)
    if attention_mask is not None:
        scores.add_(attention_mask[:, :, :, : key_states.shape[-2]])
    if state.mask_positions is not None:
        scores = _mask_keys(state, scores)
    layer, method = module.layer_idx, state.intervention
    site = _site(state, layer, *scores.shape[-2:], scores.device) if state.intervenes(layer) else None
    if site is not None and method.acts_on_scores(layer):
        scores = method.scores(site, scores)
    weights = torch.nn.functional.softmax(scores, dim=-1)
    del scores
    weights = _apply_var_and_capture(state, layer, weights, record)
    if record and state.observe is not None:
        state.observe(layer, weights)
    output = torch.matmul(weights.to(value_states.dtype), value_states).transpose(1, 2).contiguous()
    if site is not None and method.acts_on_heads(layer):
        output = method.heads(site, output, weights)
    return output, weights


class _RecomputedAttention(torch.autograd.Function):
    """Attention whose weights are not kept for the backward: only q, k, v are saved; the backward recomputes the
    layer's attention (VAR included), hands it and its gradient to `state.attention_gradient`, and propagates.
    Attention-sized memory is then one layer's at a time instead of growing with depth."""

    @staticmethod
    def forward(ctx, query, key, value, attend):
        ctx.attend = attend
        ctx.save_for_backward(query, key, value)
        output, _ = attend(query, key, value, True)
        return output

    @staticmethod
    def backward(ctx, grad_output):
        if ctx.attend.state.deadline is not None:
            ctx.attend.state.deadline.check()
        query, key, value = (tensor.detach().requires_grad_() for tensor in ctx.saved_tensors)
        with torch.enable_grad():
            output, weights = ctx.attend(query, key, value, False)
            *gradients, weights_gradient = torch.autograd.grad(output, (query, key, value, weights), grad_output)
        ctx.attend.state.attention_gradient(ctx.attend.layer, weights.detach(), weights_gradient)
        ctx.attend = None  # the graph no longer reaches the run state
        return *gradients, None


@dataclass
class _Attend:
    """`_attend` bound to one layer call's state, module, mask and scaling (what the recomputation needs)."""

    state: RunState
    module: torch.nn.Module
    attention_mask: torch.Tensor | None
    scaling: float

    @property
    def layer(self) -> int:
        return self.module.layer_idx

    def __call__(self, query, key, value, record: bool):
        return _attend(self.state, self.module, query, key, value, self.attention_mask, self.scaling, record)


def var_attention_forward(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    """Attention with the contract of transformers' `eager_attention_forward`: explicit float32 attention with
    VAR + capture where the run needs it, transformers' sdpa elsewhere."""
    state = _ACTIVE_RUN.get()
    if state is not None:
        _refuse_unsupported(state, module, kwargs)  # also before sdpa, which would drop `s_aux` silently
        if state.deadline is not None:
            state.deadline.check()
    if state is None or not state.explicit(module.layer_idx):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    if dropout and module.training:
        raise UnsupportedAttention(f"{state.model_name} is in training mode with attention dropout: trace it in eval mode")
    attend = _Attend(state, module, attention_mask, scaling)
    if state.attention_gradient is not None and torch.is_grad_enabled() and query.requires_grad:
        return _RecomputedAttention.apply(query, key, value, attend), None
    return attend(query, key, value, True)


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


@contextmanager
def outside_run():
    """Run the enclosed model calls outside any run's hook state: no capture, VAR, masking or intervention (the
    attention falls back to sdpa, the sink pre-hooks record nothing), then restore the run that was active. For a
    second decoding branch inside a run (`var_core.interventions.contrast`)."""
    token = _ACTIVE_RUN.set(None)
    try:
        yield
    finally:
        _ACTIVE_RUN.reset(token)
