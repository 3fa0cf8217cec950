"""The causal probe "mask visual tokens": chosen image tokens removed from attention (−∞ before the softmax) for
the text after the image and every generated token, in every layer (paper Fig. 3b) — the visual sinks, one clicked
patch, or a random set of the same size as the sinks (the control: is it the sinks, or any tokens?)."""

from __future__ import annotations

import numpy as np
import torch

from var_core.config import VARConfig
from var_core.interventions.base import Intervention, Site
from var_core.trace import Trace

CHOICES = ("sinks", "patch", "random")


class MaskTokens(Intervention):
    """Keys at `positions` (prompt token indices) masked for the acted-on rows in every layer."""

    name = "mask"

    def __init__(self, positions, label: str = "tokens"):
        positions = np.asarray(positions, dtype=np.int64).reshape(-1)
        if positions.size == 0 or (positions < 0).any():
            raise ValueError("mask needs at least one token position, all ≥ 0")
        self.positions, self.label = np.unique(positions), label

    def acts_on_scores(self, layer: int) -> bool:
        return True

    def scores(self, site: Site, scores: torch.Tensor) -> torch.Tensor:
        keys = torch.zeros(scores.shape[-1], dtype=torch.bool, device=scores.device)
        inside = self.positions[self.positions < scores.shape[-1]]
        keys[torch.as_tensor(inside, device=scores.device)] = True
        return scores.masked_fill(site.rows[:, None] & keys[None, :], torch.finfo(scores.dtype).min)

    def settings(self) -> dict:
        return {"method": self.name, "masked": self.label, "positions": self.positions.tolist()}


def tokens_to_mask(baseline: Trace, choice: str, patch: int | None = None, seed: int = 0) -> tuple[np.ndarray, str]:
    """(prompt positions, label) of the visual tokens a probe masks, read off a baseline run: "sinks" (visual sinks
    in any layer VAR acts on), "patch" (visual token `patch`), "random" (as many non-sink visual tokens as there are
    sinks, drawn with `seed`); a baseline's VAR layers are the default ones it would act on. A ValueError when the choice is unknown or selects nothing."""
    if choice not in CHOICES:
        raise ValueError(f"mask={choice!r} must be one of {list(CHOICES)}")
    visual = baseline.visual_positions
    layers = list(baseline.settings.get("var_layers") or VARConfig().resolve_layers(baseline.num_layers))
    sinks = baseline.visual_sinks[layers].any(0)
    if choice == "patch":
        if patch is None or not 0 <= int(patch) < len(visual):
            raise ValueError(f"patch={patch!r}: pick a visual token 0 … {len(visual) - 1}")
        return visual[[int(patch)]], f"patch {int(patch)}"
    if not sinks.any():
        raise ValueError("this run has no visual sinks to mask (or to match in size): lower τ or pick a patch")
    if choice == "sinks":
        return visual[sinks], f"{int(sinks.sum())} visual sinks"
    others = np.flatnonzero(~sinks)
    if len(others) < sinks.sum():
        raise ValueError("fewer non-sink visual tokens than sinks: a random set of the same size cannot be drawn")
    drawn = np.random.default_rng(seed).choice(others, size=int(sinks.sum()), replace=False)
    return visual[np.sort(drawn)], f"{int(sinks.sum())} random non-sink visual tokens (seed {seed})"
