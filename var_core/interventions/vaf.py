"""VAF, the visual amplification fusion of ClearSight (Yin et al., CVPR 2025; code: ustc-hyin/ClearSight): in the
middle layers, the pre-softmax attention scores of the text after the image (and of every generated token) are
multiplied by `enh_para` on the image tokens and by `sup_para` on the system-prompt tokens (those before the
image), in one forward pass (`visaug/inference/AttnAdapter.py`).

As the released code: the scores are scaled multiplicatively before the softmax (a negative score grows more
negative with enh_para > 1), in layers 9 … 14 of LLaVA-1.5-7B (`i > 8 and i < 15`), with the README's
enh_para = 1.15 and sup_para = 0.95. The code finds the image by LLaVA-1.5's fixed lengths (35 system tokens, 576
image tokens); here by the run's image-token positions, so any model and prompt work.
"""

from __future__ import annotations

import torch

from var_core.interventions.base import Intervention, Site, check_layers, check_range, in_span


class VAF(Intervention):
    """Scores of the acted-on rows: × enh_para on image keys, × sup_para on system-prompt keys, in
    [start_layer, end_layer)."""

    name = "vaf"

    def __init__(self, enh_para: float = 1.15, sup_para: float = 0.95, start_layer: int = 9, end_layer: int = 15):
        self.enh_para = check_range("enh_para", enh_para, 0.0, 10.0)
        self.sup_para = check_range("sup_para", sup_para, 0.0, 10.0)
        self.start_layer = check_range("start_layer", start_layer, 0, 10_000, integer=True)
        self.end_layer = check_range("end_layer", end_layer, 1, 10_000, integer=True)

    def check(self, num_layers: int) -> None:
        check_layers(self.start_layer, self.end_layer, num_layers)

    def acts_on_scores(self, layer: int) -> bool:
        return in_span(layer, self.start_layer, self.end_layer) and (self.enh_para, self.sup_para) != (1.0, 1.0)

    def scores(self, site: Site, scores: torch.Tensor) -> torch.Tensor:
        factors = torch.ones(scores.shape[-1], dtype=scores.dtype, device=scores.device)
        factors[site.visual] = self.enh_para
        factors[site.system] = self.sup_para
        scores[:, :, site.rows] = scores[:, :, site.rows] * factors
        return scores

    def settings(self) -> dict:
        return {"method": self.name, "enh_para": self.enh_para, "sup_para": self.sup_para,
                "start_layer": self.start_layer, "end_layer": self.end_layer}
