"""SPIN, "Mitigating Hallucinations in Vision-Language Models through Image-Guided Head Suppression" (Sarkar, Che
et al., EMNLP 2025; code: YUECHE77/SPIN, `attentionSPIN.py`): in layers start … end − 1, for a query token, the
heads are ranked by their attention to the image tokens; the top K keep their output, the others' outputs (before
the output projection) are multiplied by a suppression factor (0: zeroed), MHA = (⊕ᵢ mᵢ·hᵢ)·W_o.

Parameters, named as in the released code: `routed_heads`, the share of heads kept, K = int(routed_heads · H) (the
code's floor, `num_routed_head`); `num_routed_heads`, a head count instead of the share (not in the code; None:
the share); `small_num_mask`, the suppression factor of the other heads (the paper's α; the code's default None
multiplies them by the one-hot mask's 0, which is 0.0 here); `start_layer` / `end_layer` (end exclusive).

Defaults: the released code's for LLaVA-1.5-7B (`chair_eval.py` / `pope_chat_eval.py` argparse defaults and every
LLaVA-1.5-7B command of its README): layers 0 … 31 of 32, routed_heads = 0.95 (K = 30 of 32 heads), small_num_mask
None (suppressed heads zeroed). The README's per-benchmark settings for LLaVA-1.5-7B also set small_num_mask:
CHAIR 0.95 / 0.08, POPE 0.8 / 0.1 (routed_heads / small_num_mask); MMHal on the 13B model: layers 0 … 19, 0.9.

Paper vs code (both selectable):
- Which query rows: the paper suppresses heads "for each text query token"; the released code gates the last query
  row of each attention call only (`attn_scores[:, -1]`; the other prefill rows get a mask of ones) — at prefill
  the last prompt token, then each generated token, the rows that predict the answer. `rows="last"` (default) is
  the code; `rows="all"` every acted-on row (`Site.rows`: the text after the image and every generated token).
  A row outside `Site.rows` is never changed.
- What ranks the heads: the paper ranks by each head's attention to the image tokens; the code sums the
  pre-softmax scores QKᵀ/√d (+ mask) over the image keys (`attn_weights` before the softmax), then divides by
  their std over heads and takes a softmax over heads before top-k — both monotone, so the ranking is that of the
  summed scores. `score="scores"` (default) is the code (read at the scores stage, which it leaves unchanged);
  `score="weights"` sums the post-softmax weights as used (after VAR when VAR runs too) over the image keys.
Ties rank the lower head index first (a stable sort; the code's `torch.topk` leaves ties unspecified, and its
std-normalised softmax is NaN when every head's sum is equal).
"""

from __future__ import annotations

import threading

import torch

from var_core.interventions.base import Intervention, Site, check_layers, check_range, in_span

ROWS = ("last", "all")
SCORES = ("scores", "weights")


class SPIN(Intervention):
    """Per query row (the predicting row, or every acted-on row), keep the K heads with the most image attention
    and scale the other heads' outputs by `small_num_mask`, in layers [start_layer, end_layer)."""

    name = "spin"

    def __init__(self, routed_heads: float = 0.95, small_num_mask: float | None = None, start_layer: int = 0,
                 end_layer: int | None = 32, num_routed_heads: int | None = None, rows: str = "last",
                 score: str = "scores"):
        self.routed_heads = check_range("routed_heads", routed_heads, 0.0, 1.0)
        self.num_routed_heads = num_routed_heads if num_routed_heads is None else check_range(
            "num_routed_heads", num_routed_heads, 0, 10_000, integer=True)
        self.small_num_mask = 0.0 if small_num_mask is None else check_range("small_num_mask", small_num_mask,
                                                                              0.0, 1.0)
        self.start_layer = check_range("start_layer", start_layer, 0, 10_000, integer=True)
        self.end_layer = end_layer if end_layer is None else check_range("end_layer", end_layer, 1, 10_000,
                                                                          integer=True)
        if rows not in ROWS:
            raise ValueError(f"rows={rows!r} must be one of {', '.join(ROWS)}")
        if score not in SCORES:
            raise ValueError(f"score={score!r} must be one of {', '.join(SCORES)}")
        self.rows, self.score = rows, score
        self._stash = threading.local()  # the scores stage's image sums, read by the same call's heads stage

    def check(self, num_layers: int) -> None:
        check_layers(self.start_layer, self.end_layer if self.end_layer is None else min(self.end_layer, num_layers),
                     num_layers)

    def kept(self, num_heads: int) -> int:
        """K, the heads kept per row in a layer of `num_heads` heads (a ValueError when the count exceeds it)."""
        if self.num_routed_heads is None:
            return int(self.routed_heads * num_heads)
        return check_range("num_routed_heads", self.num_routed_heads, 0, num_heads, integer=True)

    def acts_on_scores(self, layer: int) -> bool:
        return self.score == "scores" and self.acts_on_heads(layer)

    def acts_on_heads(self, layer: int) -> bool:
        return in_span(layer, self.start_layer, self.end_layer)

    def acted_rows(self, site: Site) -> torch.Tensor:
        """[Q] bool: the query rows this call gates (within `site.rows`)."""
        if self.rows == "all":
            return site.rows
        last = torch.zeros_like(site.rows)
        last[-1:] = site.rows[-1:]
        return last

    @staticmethod
    def image_sums(site: Site, rows: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        """[H, R]: `attention` [1, H, Q, K] summed over the image keys, for the R rows marked in `rows`."""
        picked = attention[0][:, rows.nonzero().view(-1)]  # [H, R, K]
        return picked[..., site.visual.nonzero().view(-1)].sum(dim=-1)

    def scores(self, site: Site, scores: torch.Tensor) -> torch.Tensor:
        self._stash.sums = (site.layer, self.image_sums(site, self.acted_rows(site), scores))
        return scores

    def gates(self, site: Site, output: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """[Q, H] the factor each row's head output is multiplied by: 1 for kept heads and rows not gated,
        `small_num_mask` for the suppressed heads of gated rows."""
        num_heads = output.shape[2]
        k = self.kept(num_heads)
        rows = self.acted_rows(site)
        if self.score == "scores":
            layer, sums = getattr(self._stash, "sums", None) or (None, None)
            self._stash.sums = None
            if layer != site.layer or sums is None:
                raise RuntimeError(f"SPIN(score='scores') in layer {site.layer}: the scores stage did not run "
                                   "before the heads stage")
        else:
            sums = self.image_sums(site, rows, weights)
        order = torch.sort(sums, dim=0, descending=True, stable=True).indices  # [H, R]
        keep = torch.zeros(sums.shape, dtype=torch.bool, device=sums.device).scatter_(0, order[:k], True)
        suppressed = torch.zeros(output.shape[1], num_heads, dtype=torch.bool, device=output.device)
        suppressed[rows.to(output.device)] = ~keep.T.to(output.device)
        ones = torch.ones((), dtype=output.dtype, device=output.device)
        small = torch.full((), self.small_num_mask, dtype=output.dtype, device=output.device)
        return torch.where(suppressed, small, ones)

    def heads(self, site: Site, output: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return output * self.gates(site, output, weights)[None, :, :, None]

    def settings(self) -> dict:
        return {"method": self.name, "routed_heads": self.routed_heads, "num_routed_heads": self.num_routed_heads,
                "small_num_mask": self.small_num_mask, "start_layer": self.start_layer,
                "end_layer": self.end_layer, "rows": self.rows, "score": self.score}
