"""One model run (baseline or VAR) → a `Trace`. The only entry point the app and experiments use."""

from __future__ import annotations

import threading
import unicodedata

import numpy as np
import torch
from PIL import Image
from transformers import LogitsProcessor, LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

from var_core import memory
from var_core.config import VARConfig, checked_layers
from var_core.heads import image_centric, non_sink_ratio
from var_core.hook import NON_SINK, RHO_MARGIN, SINKS, VISUAL, RunState, attention_hook
from var_core.interventions.base import Intervention
from var_core.limits import MAX_NEW_TOKENS_LIMIT, Deadline, GenerationStopped
from var_core.models.bundle import ModelBundle, PreparedInputs
from var_core.registry import validate_tau
from var_core.trace import Trace

MAX_PROMPT_CHARS = 4000
TOP_K = 5  # next-token candidates recorded per decoding step
ATTENTION_NUMERICS = "scores and softmax in float32; layers without VAR or capture run sdpa"


class _StopWhenSet(StoppingCriteria):
    """Ends greedy decoding at the next token once `signal` is set (checked after every decoding step)."""

    def __init__(self, signal: threading.Event):
        self.signal = signal

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        return torch.full((input_ids.shape[0],), self.signal.is_set(), dtype=torch.bool, device=input_ids.device)


class _RecordTop(LogitsProcessor):
    """Keeps the TOP_K likeliest next tokens of every decoding step on the device (last in the list, so it sees the
    scores generate chooses from; k values a step, where output_scores would keep the vocabulary); scores unchanged."""

    def __init__(self):
        self.probs: list[torch.Tensor] = []
        self.ids: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        probs, ids = torch.softmax(scores[0].float(), -1).topk(min(TOP_K, scores.shape[-1]))
        self.probs.append(probs)
        self.ids.append(ids)
        return scores

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """([S, k] int64 ids, [S, k] float32 probabilities), one transfer each."""
        return _to_host(self.ids).numpy(), _to_host(self.probs).numpy()


def clean_prompt(prompt: str) -> str:
    """Drop control characters (NUL, escape codes …) but keep newlines and tabs; emoji and RTL text pass."""
    return "".join(ch for ch in prompt if ch in "\n\t" or unicodedata.category(ch) != "Cc")


def check_image_and_prompt(image, prompt: str) -> Image.Image:
    """Validate an image and a prompt with messages a person can act on; returns an RGB PIL image."""
    if image is None:
        raise ValueError("no image given: pass a PIL image or an [H, W, 3] uint8 array")
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    if not isinstance(image, Image.Image):
        raise ValueError(f"image must be a PIL image or numpy array, got {type(image).__name__}")
    if not isinstance(prompt, str) or not clean_prompt(prompt).strip():
        raise ValueError("the prompt is empty: ask a question about the image")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise ValueError(f"the prompt has {len(prompt)} characters; the limit is {MAX_PROMPT_CHARS}")
    return image.convert("RGB")


def _to_host(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Stack same-shaped tensors (layers may sit on several devices) and copy them to the CPU in one transfer."""
    device = tensors[0].device
    return torch.stack([tensor.to(device) for tensor in tensors]).cpu()


def _layer_arrays(state: RunState, layers: list[int], num_heads: int, n_visual: int) -> dict[str, np.ndarray | None]:
    """The hook's per-call records of the captured `layers` as [k, H, Q, ...] arrays (attention in the hook's
    CAPTURE_DTYPE, masses float32); ratio and the image-centric rows follow from the captured masses by the same
    rule the hook applied while running."""
    if not state.layers:  # capture off (or no row after the image): empty query axis
        empty = {name: np.zeros((len(layers), num_heads, 0, *tail), dtype)
                 for name, tail, dtype in (("attn_to_visual", (n_visual,), np.float16), ("visual_mass", (), np.float32),
                                           ("sink_mass", (), np.float32), ("ratio", (), np.float32))}
        return {**empty, "attn_to_visual_raw": None, "selected": np.zeros((len(layers), num_heads, 0), bool)}
    records = [state.layers[layer] for layer in layers]

    def stacked(name: str) -> torch.Tensor:
        return _to_host([torch.cat(getattr(record, name), dim=1) for record in records])

    masses = stacked("masses")
    visual_mass, non_sink, sink_mass = masses[..., VISUAL], masses[..., NON_SINK], masses[..., SINKS]
    ratio = non_sink_ratio(visual_mass, non_sink)
    has_visual_sinks = torch.tensor([state.plans[layer].has_visual_sinks for layer in layers])
    selected = image_centric(visual_mass, masses[..., RHO_MARGIN], state.selection.min_visual_mass)
    return {"attn_to_visual": stacked("attn_to_visual").numpy(),
            "attn_to_visual_raw": stacked("attn_to_visual_raw").numpy() if state.var is not None else None,
            "visual_mass": visual_mass.numpy(), "sink_mass": sink_mass.numpy(), "ratio": ratio.numpy(),
            "selected": (selected & has_visual_sinks[:, None, None]).numpy()}


def _profile(state: RunState, phi: np.ndarray, visual_positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """|x|/RMS(x) at the profile layer for: first token, the visual tokens of highest and median φ over all layers
    (phi: [L, T_prompt]; the order `viz.evidence.visual_by_phi` uses, so both views name the same tokens)."""
    hidden = state.profile_hidden[0].cpu()
    order = np.argsort(phi[:, visual_positions].max(0), kind="stable")
    picks = np.array([0, visual_positions[order[-1]], visual_positions[order[len(order) // 2]]])
    rows = hidden[picks]
    normalised = rows.abs() * torch.rsqrt(rows.pow(2).mean(-1, keepdim=True) + 1e-6)
    return normalised.cpu().numpy(), picks


def _mask_tensor(positions, n_prompt: int, device) -> torch.Tensor | None:
    """Validated [N] long tensor of prompt positions to mask, or None."""
    if positions is None:
        return None
    tensor = torch.as_tensor(np.asarray(positions, dtype=np.int64).reshape(-1))
    bad = tensor[(tensor < 0) | (tensor >= n_prompt)]
    if len(bad):
        raise ValueError(f"mask_positions {bad.tolist()} are outside the prompt (positions 0 … {n_prompt - 1})")
    return tensor.to(device)


def _raise_if_stopped(stop: threading.Event | None) -> None:
    if stop is not None and stop.is_set():
        raise GenerationStopped("stopped before the answer was complete")


def _model_shape(bundle: ModelBundle) -> memory.ModelShape:
    """The bundle's `memory.ModelShape`, computed once per bundle."""
    if "memory_shape" not in bundle.extra:
        bundle.extra["memory_shape"] = memory.model_shape(bundle.model)
    return bundle.extra["memory_shape"]


def prepare_run(bundle: ModelBundle, image, prompt: str, config: VARConfig | None = None,
                measure: VARConfig | None = None, capture: bool = True,
                mask_positions=None, capture_layers=None, max_new_tokens: int = 0,
                explanation: bool = False, deadline: Deadline | None = None,
                intervention: Intervention | None = None) -> tuple[PreparedInputs, RunState]:
    """Validate the request and build its model inputs and the hook's `RunState` (see `generate` for the arguments);
    shared by `generate` and the single forward passes of `var_core.explain` (`explanation`: a backward pass
    follows; `deadline`: the hook checks it at every layer; `intervention`: another method or a probe,
    `var_core.interventions`). Before any model code runs, the request's peak memory is estimated (`var_core.memory`) and a request
    that cannot fit on the model's device is refused with `InsufficientMemory`."""
    image = check_image_and_prompt(image, prompt)
    selection = config or measure or VARConfig()
    backbone = bundle.backbone
    sink_dims = selection.sink_dims or backbone.sink_dims
    tau = selection.tau if selection.tau is not None else backbone.tau
    validate_tau(tau, bundle.text_config.hidden_size)
    num_layers = bundle.num_layers
    captured = checked_layers(capture_layers, num_layers, "capture_layers")
    if intervention is not None:
        intervention.check(num_layers)
    prepared = bundle.adapter.prepare(bundle, image, clean_prompt(prompt))
    input_ids = prepared.inputs["input_ids"]
    needs = memory.estimate(_model_shape(bundle), input_ids.shape[1], len(prepared.visual_positions), max_new_tokens,
                            len(captured) if capture else 0, var=config is not None, explanation=explanation)
    memory.check_fits(needs, bundle.device)
    visual_mask = torch.zeros_like(input_ids, dtype=torch.bool)
    visual_mask[0, prepared.visual_positions] = True
    state = RunState(visual_mask=visual_mask.to(bundle.device),
                     query_start=int(prepared.visual_positions.max()) + 1,
                     grid_positions=prepared.visual_positions.to(bundle.device),
                     sink_dims=tuple(sink_dims), tau=float(tau), selection=selection, var=config,
                     var_layers=frozenset(config.resolve_layers(num_layers)) if config is not None else frozenset(),
                     capture=capture, capture_layers=None if capture_layers is None else frozenset(captured),
                     model_name=bundle.name,
                     mask_positions=_mask_tensor(mask_positions, input_ids.shape[1], bundle.device),
                     deadline=deadline, intervention=intervention)
    return prepared, state


def _logits_processors(bundle: ModelBundle, prepared: PreparedInputs, intervention: Intervention | None) -> list:
    """The intervention's next-token logits processor (contrastive decoding), if it has one; it runs before the
    top-5 record, so the Trace records the distribution generate chose from."""
    processor = None if intervention is None else intervention.logits_processor(bundle, prepared)
    return [] if processor is None else [processor]


@torch.inference_mode()
def generate(bundle: ModelBundle, image, prompt: str, config: VARConfig | None = None, capture: bool = True,
             max_new_tokens: int = 64, measure: VARConfig | None = None, max_time: float | None = None,
             mask_positions=None, stop: threading.Event | None = None, capture_layers=None,
             intervention: Intervention | None = None) -> Trace:
    """Greedy-generate an answer to `prompt` about `image`, with VAR if `config` is given, and trace it.

    config=None is the baseline: no redistribution, but sinks and head statistics are still measured, with
    `measure`'s τ, ρ, sink dims (default: the registry's), so a baseline can be compared with a VAR run.
    max_time: stop decoding after this many seconds (a request time limit); control characters are dropped.
    mask_positions: prompt token positions (e.g. visual sinks) that the text after the image and the generated
    tokens may not attend to, in every layer (pre-softmax −∞; paper Fig. 3b); None = no masking.
    intervention: another training-free method or a causal probe (`var_core.interventions`), alone or with VAR.
    stop: a cancel signal (anything with `is_set()`); once set, decoding ends after the current token and
    `GenerationStopped` is raised, so a request the user abandoned frees the model within one decoding step.
    capture_layers: the layers whose text→visual attention the Trace keeps (None = all); the other layers run
    transformers' sdpa unless VAR acts there, and capture memory is ∝ their count: k·H·Q·N_vis·2 bytes (float16),
    twice that with VAR (the raw copy).
    """
    if not (isinstance(max_new_tokens, int) and 1 <= max_new_tokens <= MAX_NEW_TOKENS_LIMIT):
        raise ValueError(f"max_new_tokens={max_new_tokens!r} must be an integer in [1, {MAX_NEW_TOKENS_LIMIT}]")
    prepared, state = prepare_run(bundle, image, prompt, config, measure, capture, mask_positions, capture_layers,
                                  max_new_tokens, intervention=intervention)
    prompt = clean_prompt(prompt)
    selection, num_layers, num_heads = state.selection, bundle.num_layers, bundle.num_heads
    input_ids = prepared.inputs["input_ids"]
    visual_positions = state.grid_positions.cpu().numpy()
    tokenizer = bundle.tokenizer
    inputs = {k: v.to(bundle.device) for k, v in prepared.inputs.items()}
    stopping = StoppingCriteriaList([_StopWhenSet(stop)] if stop is not None else [])
    top = _RecordTop()
    with bundle.lock, attention_hook(bundle.model, bundle.adapter.decoder_layers(bundle.model), state):
        _raise_if_stopped(stop)  # set while this run waited for the model
        output = bundle.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, max_time=max_time,
                                       stopping_criteria=stopping, logits_processor=LogitsProcessorList(
                                           _logits_processors(bundle, prepared, intervention) + [top]),
                                       pad_token_id=tokenizer.eos_token_id if tokenizer.pad_token_id is None else tokenizer.pad_token_id)
    _raise_if_stopped(stop)
    sequence = output[0].cpu()
    n_prompt = input_ids.shape[1]
    answer = tokenizer.decode(sequence[n_prompt:], skip_special_tokens=True).strip()
    n_queries_prompt = n_prompt - state.query_start
    captured = list(range(num_layers)) if state.capture_layers is None else sorted(state.capture_layers)
    layer_arrays = _layer_arrays(state, captured, num_heads, len(visual_positions))
    n_queries = layer_arrays["visual_mass"].shape[2]
    phi = _to_host([state.phi[layer][0] for layer in range(num_layers)]).numpy()
    profile_hidden, profile_tokens = _profile(state, phi, visual_positions)
    top_ids, top_probs = top.arrays()
    return Trace(
        model_name=bundle.name, prompt=prompt, answer=answer,
        tokens=[tokenizer.decode([int(t)]) for t in sequence], n_prompt=n_prompt,
        image=prepared.image, grid=tuple(prepared.grid), visual_positions=visual_positions,
        image_token_positions=visual_positions, cells=prepared.cells, views=prepared.views,
        query_positions=np.arange(state.query_start, state.query_start + (n_queries if capture else 0)),
        phi=phi,
        sink_mask=_to_host([state.sink_masks[layer][0] for layer in range(num_layers)]).numpy(),
        profile_hidden=profile_hidden, profile_tokens=profile_tokens, profile_layer=state.profile_layer,
        captured_layers=captured, top_token_ids=top_ids, top_probs=top_probs,
        top_tokens=[tokenizer.batch_decode(step[:, None]) for step in top_ids],
        settings={"model": bundle.name, "sink_dims": list(state.sink_dims), "tau": state.tau, "rho": selection.rho,
                  "min_visual_mass": selection.min_visual_mass, "p": None if config is None else config.p,
                  "var_layers": sorted(state.var_layers), "recycle_text_sinks": selection.recycle_text_sinks,
                  "select_heads": selection.select_heads, "budget_to": selection.budget_to,
                  "mask_positions": None if mask_positions is None else np.asarray(mask_positions).reshape(-1).tolist(),
                  "max_new_tokens": max_new_tokens, "prompt_queries": n_queries_prompt,
                  "capture_layers": captured, "dtype": str(bundle.model.dtype).removeprefix("torch."),
                  "attention": ATTENTION_NUMERICS, "seen": dict(getattr(prepared, "seen", None) or {}),
                  "intervention": None if intervention is None else intervention.settings()},
        **layer_arrays,
    )
