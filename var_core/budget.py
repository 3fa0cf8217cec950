"""The visual-token budget: how many visual tokens one image may become, per model family, and how it is chosen.

Why a budget: hooked layers compute explicit attention, ≈ 8·H·T² bytes per layer call (float32 scores and softmax;
`var_core.memory`), and the Trace stores [k, H, Q, N] attention. Qwen2-VL's hub processors accept up to 12.8 Mpx, so a 2048² photo is ≈ 5,300
visual tokens: for Qwen2-VL-7B (28 layers, 28 heads, 16.6 GB of bfloat16 weights) T ≈ 5,500 gives ≈ 8.5 GB of
transient scores and ≈ 1.2 GB of float16 Trace per stored copy (Q ≈ 150 queries): beyond a 24 GB GPU. At 1,280
visual tokens (transformers' own Qwen2-VL default, `max_pixels` = 28·28·1280) T ≈ 1,470 with a short prompt and 128 new
tokens: ≈ 0.5 GB of scores, ≈ 0.3 GB per Trace copy, ≈ 0.1 GB of KV cache, so weights + Analyze stay near 19 GB and
Analyze + the explanation near 24 GB (`var_core.memory`'s estimate, tests/test_memory.py).

DEFAULT_VISUAL_TOKEN_BUDGET (1,280) holds for every family except the anyres ones. LLaVA-NeXT's layout cannot go below
≈ 1,200–1,750 tokens (576 base view + at least two 336-px tiles, by aspect ratio); its default, 2,928, is the
largest layout of llava-v1.6's pinpoints (672 × 672: 576 + 48·48 + 48 newlines), so the hub behaviour is kept
(T ≈ 3,000 → ≈ 2.9 GB of scores for a 7B model). LLaVA-OneVision's layout (384-px SigLIP: 729 base tokens, then
the tiles) cannot go below 729 + 729 + 27 = 1,485; its default, 3,699, is 2 × 2 tiles of a square photo
(729 + 54·54 + 54 newlines; its hub processors go up to ≈ 7,400 with `anyres_max_9`). Fixed-size families are only
checked: LLaVA-1.5 gives 576, InternVL3-hf 256 per 448-px tile (one tile with the hub processor), Gemma 3 256 per
view (one view unless pan & scan is on), the default model 64.

Choosing it, first match wins: `bundle.extra["visual_token_budget"]` (per model, and per call by setting it before
the call), the environment variable VAR_VISUAL_TOKENS (every family), the family default above. Each adapter turns
the budget into its processor's own size controls (Qwen `size` = min/max pixels, SmolVLM/Idefics3 `longest_edge`,
LLaVA-NeXT and -OneVision a downscale that makes the model pick a smaller pinpoint, InternVL `max_patches`, Gemma 3
the pan & scan crops; the generic path has none and only checks) and refuses, with a ValueError, a budget below what
the family needs.
"""

from __future__ import annotations

import os

DEFAULT_VISUAL_TOKEN_BUDGET = 1280
FAMILY_DEFAULTS = {"llava_next": 2928, "llava_onevision": 3699}
ENV_VAR = "VAR_VISUAL_TOKENS"
SETTING = "visual_token_budget"  # the key in ModelBundle.extra


def _positive(value, source: str) -> int:
    """`value` as a positive int, or a ValueError naming where it came from."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number <= 0 or (isinstance(value, float) and value != number):
        raise ValueError(f"the visual-token budget from {source} must be a positive whole number, got {value!r}")
    return number


def visual_token_budget(bundle) -> int:
    """The budget for one request to `bundle`: its extra setting, else $VAR_VISUAL_TOKENS, else the family default."""
    if bundle.extra.get(SETTING) is not None:
        return _positive(bundle.extra[SETTING], f'bundle.extra["{SETTING}"]')
    if os.environ.get(ENV_VAR, "").strip():
        return _positive(os.environ[ENV_VAR].strip(), f"${ENV_VAR}")
    return FAMILY_DEFAULTS.get(bundle.adapter.family, DEFAULT_VISUAL_TOKEN_BUDGET)


def refuse_below(budget: int, needed: int, what: str) -> None:
    """Raise a ValueError when `budget` is below the `needed` visual tokens of `what` (a phrase naming the model)."""
    if budget < needed:
        raise ValueError(f"visual-token budget {budget:,} is below the {needed:,} visual tokens {what}; raise it "
                         f'(bundle.extra["{SETTING}"] or ${ENV_VAR}) to at least {needed:,}')


def check_budget(found: int, budget: int, what: str) -> None:
    """After processing: the processor's actual token count must be within the budget (it is by construction; an
    extreme aspect ratio can still round above it, and then the run is refused rather than run over budget)."""
    if found > budget:
        raise ValueError(f"{what} became {found:,} visual tokens, over the visual-token budget {budget:,} (an extreme "
                         f"aspect ratio rounds up); crop the image or raise the budget "
                         f'(bundle.extra["{SETTING}"] or ${ENV_VAR})')
