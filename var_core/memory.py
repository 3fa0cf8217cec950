"""Peak device memory of one request, estimated from the model's shape and the request's sizes before it runs, so
a request that cannot fit is refused with a message instead of dying out of memory half-way.

Notation: L layers, H query heads, G key/value heads, d head size, D hidden size, I MLP width, V vocabulary,
b bytes per model-dtype element; T prompt tokens (image included), N visual tokens, n new tokens, k captured
layers, Q = T − N + n captured query rows (an upper bound: every text token plus every new one), c = 2 copies of
the captured attention with VAR (as used and raw), else 1. Every part is in bytes:

- weights: every parameter and buffer of the model, as loaded.
- kv_cache = 2·L·(T + n)·G·d·b.
- activations = T·(6·D + 3·I)·b: one decoder layer's prefill working set (the residual, the norm's float32 copy
  and its output, the MLP's gate/up/product of width I); layers run one at a time.
- scores = 8·H·T² + b·T² + 16·H·T·d: one explicit-attention layer call of the hook, which forms QKᵀ (float32
  [H, T, T]) and its softmax (float32) before freeing the scores; the product with V casts the weights to the
  model dtype only after that (4 + b ≤ 8 bytes per score). Plus the [T, T] mask in the model dtype and the float32
  copies of q and of the repeated k, v. transformers' sdpa layers keep no [T, T] tensor.
- trace = k·H·Q·(2·N·c + 24) + 2·k·H·Q·2·N: the captured float16 attention and float32 masses kept on the device
  while decoding, plus a concatenated and a stacked copy of one attention array while the run collects it. The
  Trace then holds k·H·Q·(2·N·c + 13) bytes on the host (`trace_bytes`).
- explanation (0 without one) = max(L·T·((4·D + 2·G·d + 3·I)·b + 8·D·h), 4·L·T²) + 16·H·T² + 2·V·b: what
  autograd keeps for the backward through every layer (norm inputs, q and the attention output, k and v, the MLP's
  three I-wide tensors; in half precision (h = 1, else 0) also the norms' float32 copies; the hook saves no
  attention weights), which the backward frees layer by layer while it fills Chefer's Ā [T, T] float32 per layer;
  one layer's attention recomputed in the backward (its weights, their gradient and the Ā product with its clipped
  copy: 4 float32 [H, T, T]); and the answer row's logits with their gradient (the explanation asks the model
  for that row only: `logits_to_keep=1`).

A layer's attention call and its MLP do not overlap, and Analyze and the explanation run one after the other, so
total = weights + kv_cache + max(trace + max(activations, scores), explanation).
"""

from __future__ import annotations

from dataclasses import dataclass

import psutil
import torch

GB = 1e9


class InsufficientMemory(ValueError):
    """A request's estimated peak memory exceeds what its device has free: refused before it runs."""


@dataclass(frozen=True)
class ModelShape:
    """The model facts the estimate needs: bytes of weights, dtype width and the text model's sizes."""

    weight_bytes: int
    dtype_bytes: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    hidden: int
    intermediate: int
    vocab: int


@dataclass(frozen=True)
class MemoryEstimate:
    """Peak memory of one request, in bytes, by part (see the module docstring for each formula)."""

    weights: int
    kv_cache: int
    activations: int
    scores: int
    trace: int
    explanation: int
    prompt_tokens: int
    visual_tokens: int
    captured_layers: int
    layers: int

    @property
    def analyze(self) -> int:
        """What the generate run needs beyond the weights and the cache: the Trace and the larger of a layer's
        attention call and its MLP."""
        return self.trace + max(self.activations, self.scores)

    @property
    def total(self) -> int:
        """The request's peak: weights, cache, then the larger of Analyze's and the explanation's needs."""
        return self.weights + self.kv_cache + max(self.analyze, self.explanation)


def model_shape(model: torch.nn.Module) -> ModelShape:
    """ModelShape of a loaded (or `torch.device("meta")`) transformers model, from its parameters and text config."""
    config = model.config.get_text_config()
    heads = config.num_attention_heads
    weights = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
    return ModelShape(weight_bytes=weights, dtype_bytes=next(model.parameters()).element_size(),
                      layers=config.num_hidden_layers, heads=heads,
                      kv_heads=getattr(config, "num_key_value_heads", None) or heads,
                      head_dim=getattr(config, "head_dim", None) or config.hidden_size // heads,
                      hidden=config.hidden_size, intermediate=config.intermediate_size, vocab=config.vocab_size)


def trace_bytes(heads: int, query_rows: int, visual_tokens: int, captured_layers: int, var: bool) -> int:
    """What a Trace's captured arrays hold on the host: k·H·Q·(2·N·c + 13) bytes (float16 attention, c copies;
    three float32 masses and one bool per row)."""
    copies = 2 if var else 1
    return captured_layers * heads * query_rows * (2 * visual_tokens * copies + 13)


def attention_scores_bytes(heads: int, tokens: int, head_dim: int, dtype_bytes: int) -> int:
    """Transient bytes of one explicit-attention layer call of the hook over `tokens` rows and keys."""
    return 8 * heads * tokens**2 + dtype_bytes * tokens**2 + 16 * heads * tokens * head_dim


def _trace_peak(shape: ModelShape, query_rows: int, visual_tokens: int, captured_layers: int, var: bool) -> int:
    """Device bytes of capture during the run and its collection (see the module docstring)."""
    cells = captured_layers * shape.heads * query_rows
    return cells * (2 * visual_tokens * (2 if var else 1) + 24) + 2 * cells * 2 * visual_tokens


def _explanation_bytes(shape: ModelShape, tokens: int) -> int:
    """Extra bytes of the explanation's forward and backward pass (see the module docstring)."""
    s = shape
    per_token = (4 * s.hidden + 2 * s.kv_heads * s.head_dim + 3 * s.intermediate) * s.dtype_bytes
    saved = s.layers * tokens * (per_token + (8 * s.hidden if s.dtype_bytes < 4 else 0))
    products = 4 * s.layers * tokens**2
    return max(saved, products) + 16 * s.heads * tokens**2 + 2 * s.vocab * s.dtype_bytes


def estimate(shape: ModelShape, prompt_tokens: int, visual_tokens: int, max_new_tokens: int = 0,
             captured_layers: int = 0, var: bool = False, explanation: bool = False) -> MemoryEstimate:
    """Peak memory of one request: a generate run of `max_new_tokens` capturing `captured_layers` layers (0 = no
    capture), with VAR when `var`, and the explanation maps' passes when `explanation`."""
    s, tokens = shape, prompt_tokens
    query_rows = prompt_tokens - visual_tokens + max_new_tokens
    return MemoryEstimate(
        weights=s.weight_bytes,
        kv_cache=2 * s.layers * (tokens + max_new_tokens) * s.kv_heads * s.head_dim * s.dtype_bytes,
        activations=tokens * (6 * s.hidden + 3 * s.intermediate) * s.dtype_bytes,
        scores=attention_scores_bytes(s.heads, tokens, s.head_dim, s.dtype_bytes),
        trace=_trace_peak(s, query_rows, visual_tokens, captured_layers, var),
        explanation=_explanation_bytes(s, tokens) if explanation else 0,
        prompt_tokens=prompt_tokens, visual_tokens=visual_tokens, captured_layers=captured_layers, layers=s.layers)


def free_bytes(device) -> int:
    """Memory `device` can still give: CUDA's free memory plus what PyTorch's cache holds unused; on MPS the
    recommended limit less what is allocated; on the CPU the memory the OS reports available."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    if device.type == "mps" and hasattr(torch.mps, "recommended_max_memory"):
        return torch.mps.recommended_max_memory() - torch.mps.current_allocated_memory()
    return psutil.virtual_memory().available


def _parts(estimate: MemoryEstimate) -> list[tuple[str, int]]:
    """(name, bytes) of the parts that make up the peak (they sum to `total`): the weights, then the rest largest
    first: the cache and either the explanation or Analyze's trace and larger transient."""
    if estimate.explanation > estimate.analyze:
        rest = [("explanation", estimate.explanation)]
    else:
        transient = (("attention scores", estimate.scores) if estimate.scores >= estimate.activations
                     else ("activations", estimate.activations))
        rest = [("trace", estimate.trace), transient]
    rest = [("KV cache", estimate.kv_cache), *rest]
    return [("weights", estimate.weights)] + sorted((part for part in rest if part[1]), key=lambda part: -part[1])


def describe(estimate: MemoryEstimate) -> str:
    """One line: the total and its parts in GB, e.g. "about 31.2 GB (weights 16.6, attention scores 8.1, …)"."""
    parts = ", ".join(f"{name} {size / GB:.1f}" for name, size in _parts(estimate))
    return f"about {estimate.total / GB:.1f} GB ({parts})"


def check_fits(estimate: MemoryEstimate, device, weights_loaded: bool = True) -> None:
    """Raise InsufficientMemory when the request's peak exceeds `device`'s free memory. With `weights_loaded` (the
    model already sits on `device`, so its free memory excludes the weights) only the rest is compared."""
    device = torch.device(device)
    needed = estimate.total - (estimate.weights if weights_loaded else 0)
    free = free_bytes(device)
    if needed <= free:
        return
    beyond = " beyond the loaded weights" if weights_loaded else ""
    layers = f"now {estimate.captured_layers} of {estimate.layers}" if estimate.captured_layers else "none now"
    raise InsufficientMemory(
        f"This request needs {describe(estimate)}, {needed / GB:.1f} GB of it{beyond}, but {device} has "
        f"{free / GB:.1f} GB free: lower the visual-token budget (now {estimate.visual_tokens:,} tokens) or the "
        f"captured layers ({layers}){' or skip the explanation' if estimate.explanation else ''}.")
