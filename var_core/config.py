"""VAR settings for one run (paper §4 / official config A_exps/lv1.5_7b.yml)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from var_core.inputs import listed

BUDGET_TARGETS = ("visual", "text")
SHOWN_BAD_LAYERS = 5  # an error names at most this many bad layers (a request for 10⁷ layers gets a short message)


def checked_layers(layers, count: int, what: str = "layers") -> list[int]:
    """`layers` (integers; None = all `count`) as a sorted list of distinct existing layers; otherwise a short
    ValueError naming `what`, a few bad values and the valid range."""
    if layers is None:
        return list(range(count))
    try:
        chosen = sorted({int(layer) for layer in layers})
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{what} must be layer numbers (integers)") from None
    bad = [layer for layer in chosen if not 0 <= layer < count]
    if bad or not chosen:
        shown = listed(bad, SHOWN_BAD_LAYERS)
        raise ValueError(f"{what}: {shown or 'none given'} — choose among the model's layers 0 … {count - 1}")
    return chosen


@dataclass(frozen=True)
class VARConfig:
    """Settings of Visual Attention Redistribution.

    p: fraction of sink attention MOVED to visual non-sink tokens (the paper's convention).
       The official config's `p: 0.6` keeps 60 %, i.e. p = 0.4 here; that is our default.
    rho: keep a head (per query row) when its visual non-sink ratio r ≥ rho (official 0.5).
    tau: φ threshold for sink tokens; None = the backbone's registry value.
    min_visual_mass: drop heads whose attention to the image is below this (official 0.2).
    sink_dims: None = the backbone's registry value.
    layers: decoder layers VAR acts on; None = 2 … L−2, as the official code (sinks are detected
        from layer 2 on and the last layer is skipped, `except_last_layer: 1`).
    recycle_text_sinks: True = official behaviour (text sinks such as BOS are scaled by 1−p and
        their mass is recycled too); False = only visual sink columns are touched.
    select_heads: True = redistribute only in image-centric head rows (paper §4.1); False = in every head of the
        VAR layers, for every text query row (ablation, paper Table 4).
    budget_to: "visual" = the freed budget goes to visual non-sink tokens (paper Eq. 5); "text" = to text
        non-sink tokens instead (ablation, paper Table 5).
    """

    p: float = 0.4
    rho: float = 0.5
    tau: float | None = None
    min_visual_mass: float = 0.2
    sink_dims: tuple[int, ...] | None = None
    layers: tuple[int, ...] | None = None
    recycle_text_sinks: bool = True
    select_heads: bool = True
    budget_to: str = "visual"

    def __post_init__(self):
        for name, low, high in (("p", 0.0, 1.0), ("rho", 0.0, 1.0), ("min_visual_mass", 0.0, 1.0)):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and low <= value <= high):
                raise ValueError(f"{name}={value!r} must be a number in [{low}, {high}]")
        if self.budget_to not in BUDGET_TARGETS:
            raise ValueError(f"budget_to={self.budget_to!r} must be one of {BUDGET_TARGETS}")
        if self.layers is not None:
            object.__setattr__(self, "layers", tuple(int(layer) for layer in self.layers))
        if self.sink_dims is not None:
            object.__setattr__(self, "sink_dims", tuple(int(d) for d in self.sink_dims))

    def resolve_layers(self, num_layers: int) -> tuple[int, ...]:
        """The layers VAR acts on for a model with `num_layers` decoder layers (validated)."""
        if self.layers is None:
            return tuple(range(2, max(num_layers - 1, 2)))
        bad = [layer for layer in self.layers if not 0 <= layer < num_layers]
        if bad:
            raise ValueError(f"layers {bad} do not exist: the model has layers 0 … {num_layers - 1}")
        return self.layers
