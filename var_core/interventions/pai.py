"""PAI, "Paying More Attention to Image" (Liu et al., ECCV 2024; code: LALBJ/PAI): in layers start … end − 1, the
pre-softmax attention scores of the predicting query row on the image tokens are amplified,
s ← s + α·|s| (`attention.py`), and, optionally, next-token logits are guided away from the text-only input,
log p = γ·(log p(y | v, x) − log p(y | x)) + log p(y | x), keeping tokens with p(y | v, x) ≥ 0.1·max (`CFG.py`).

Paper vs code: the paper amplifies every generated token's image attention; the released code amplifies the last
query row of each attention call — at prefill the last prompt token, then each new token —, which predicts exactly
the generated tokens. Both are that row here. Defaults: the released scripts' for LLaVA-1.5-7B (α = 0.2,
γ = 1.1, layers 2 … 31 of 32); `start_layer` / `end_layer` are named as there (end exclusive).
"""

from __future__ import annotations

import math

import torch

from var_core.interventions.base import Intervention, Site, check_layers, check_range, in_span
from var_core.interventions.contrast import ContrastProcessor, without_image

GUIDANCE_CUT = 0.1  # CFG.py: tokens with p(y | v, x) < 0.1·max are dropped


def pai_guidance(scores: torch.Tensor, text_only: torch.Tensor, gamma: float) -> torch.Tensor:
    """CFG.py's step on [..., V] logits: s = log_softmax(scores), u = log_softmax(text_only),
    γ·(s − u) + u, −∞ where s < log 0.1 + max s; float32."""
    s = torch.log_softmax(scores.float(), dim=-1)
    u = torch.log_softmax(text_only.float(), dim=-1)
    cutoff = math.log(GUIDANCE_CUT) + s.max(dim=-1, keepdim=True).values
    return (gamma * (s - u) + u).masked_fill(s < cutoff, -math.inf)


class PAI(Intervention):
    """Image attention amplified by α on the predicting row, in layers [start_layer, end_layer); γ > 1 adds the
    text-only guidance step (a second decoding branch without the image)."""

    name = "pai"

    def __init__(self, alpha: float = 0.2, start_layer: int = 2, end_layer: int | None = 32, gamma: float = 1.1):
        self.alpha = check_range("alpha", alpha, 0.0, 10.0)
        self.start_layer = check_range("start_layer", start_layer, 0, 10_000, integer=True)
        self.end_layer = end_layer if end_layer is None else check_range("end_layer", end_layer, 1, 10_000,
                                                                          integer=True)
        self.gamma = check_range("gamma", gamma, 1.0, 10.0)

    def check(self, num_layers: int) -> None:
        check_layers(self.start_layer, self.end_layer if self.end_layer is None else min(self.end_layer, num_layers),
                     num_layers)

    def acts_on_scores(self, layer: int) -> bool:
        return self.alpha > 0 and in_span(layer, self.start_layer, self.end_layer)

    def scores(self, site: Site, scores: torch.Tensor) -> torch.Tensor:
        last = scores[:, :, -1:, site.visual]  # the predicting row (a copy: boolean indexing)
        scores[:, :, -1:, site.visual] = last + self.alpha * last.abs()
        return scores

    def logits_processor(self, bundle, prepared):
        """γ = 1: None (no guidance; CFG.py then returns log_softmax of the scores, the same distribution). Else the
        guidance step against a second decoding branch over the same chat prompt without the image
        (`contrast.without_image`: the image tokens cut out of input_ids, as the released code joins the prompt's
        text before and after the image placeholder; no pixel values). That branch runs outside the run state, so
        the image-attention amplification does not act in it (CFG.py's `use_cfg` switch). Doubles the forward
        passes."""
        if self.gamma == 1:
            return None
        gamma = self.gamma
        return ContrastProcessor(bundle.model, without_image(prepared.inputs, prepared.visual_positions),
                                 lambda scores, text_only: pai_guidance(scores, text_only, gamma))

    def settings(self) -> dict:
        return {"method": self.name, "alpha": self.alpha, "start_layer": self.start_layer,
                "end_layer": self.end_layer, "gamma": self.gamma}
