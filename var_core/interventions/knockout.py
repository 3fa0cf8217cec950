"""Causal probe: knock out heads. The outputs of the named (layer, head) attention heads, before the output
projection, are zeroed on the acted-on query rows (`Site.rows`: the text after the image and every generated
token); the image and the prompt before it run as in the baseline. Its effect on the answer is measured against a
baseline run of the same request: `probability_change(baseline_trace, probe_trace)` (`var_core.interventions.
effects`: the baseline's first answer token, its probability under the probe, 0 when it left the probe's top 5).

Layers are checked against the model in `check(num_layers)`; heads only when a layer's attention runs (the head
count is the attention output's), where a head index ≥ H raises a ValueError naming the range.
"""

from __future__ import annotations

import torch

from var_core.interventions.base import Intervention, Site, check_range
from var_core.interventions.effects import AnswerChange, answer_change, probability_change

__all__ = ["HeadKnockout", "AnswerChange", "answer_change", "probability_change"]


class HeadKnockout(Intervention):
    """Zero the outputs of the given (layer, head) pairs on the acted-on rows; no pairs: the baseline."""

    name = "knockout"

    def __init__(self, heads=()):
        pairs = []
        for pair in heads:
            if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
                raise ValueError(f"heads: {pair!r} must be a (layer, head) pair of integers")
            layer, head = pair
            pairs.append((check_range("layer", layer, 0, 10_000, integer=True),
                          check_range("head", head, 0, 10_000, integer=True)))
        self.pairs = sorted(set(pairs))
        self.by_layer: dict[int, list[int]] = {}
        for layer, head in self.pairs:
            self.by_layer.setdefault(layer, []).append(head)

    def check(self, num_layers: int) -> None:
        for layer in self.by_layer:
            check_range("layer", layer, 0, num_layers - 1, integer=True)

    def acts_on_heads(self, layer: int) -> bool:
        return layer in self.by_layer

    def heads(self, site: Site, output: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        num_heads = output.shape[2]
        for head in self.by_layer[site.layer]:
            if head >= num_heads:
                raise ValueError(f"head={head} in layer {site.layer} must be an integer in [0, {num_heads - 1}] "
                                 f"(this model's layers have {num_heads} heads)")
        knocked = torch.zeros(num_heads, dtype=torch.bool, device=output.device)
        knocked[self.by_layer[site.layer]] = True
        cells = site.rows.to(output.device)[:, None] & knocked[None, :]  # [Q, H]
        return output.masked_fill(cells[None, :, :, None], 0)

    def settings(self) -> dict:
        return {"method": self.name, "heads": [list(pair) for pair in self.pairs]}
