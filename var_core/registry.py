"""Known LLM backbones: sink dimensions and τ, each number with its source; every entry serves a catalogue model
(var_core.models.catalog), the others discover theirs at first load.

τ rule where no source gives one: φ(x) ≤ √D (hidden size D), so a fixed τ is not portable.
We use the paper's τ = 20 when it leaves head-room (20 ≤ 0.8·√D), else 0.8·√D, which keeps τ
strictly inside the reachable range. Measured values replace the rule where we have them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

PAPER_TAU = 20.0
TAU_HEADROOM = 0.8


@dataclass(frozen=True)
class Backbone:
    """Sink facts of one pretrained LLM: which dims carry massive activations and the φ threshold."""

    name: str
    hidden_size: int
    sink_dims: tuple[int, ...]
    tau: float
    source: str

    def __post_init__(self):
        validate_tau(self.tau, self.hidden_size)
        bad = [d for d in self.sink_dims if not 0 <= d < self.hidden_size]
        if bad:
            raise ValueError(f"sink dims {bad} are outside [0, {self.hidden_size}) for backbone {self.name!r}")


def phi_bound(hidden_size: int) -> float:
    """Largest value φ can take for hidden size D: √D (all energy in one dimension)."""
    return math.sqrt(hidden_size)


def default_tau(hidden_size: int) -> float:
    """τ for a backbone with no published/measured value (rule in the module docstring)."""
    return min(PAPER_TAU, TAU_HEADROOM * phi_bound(hidden_size))


def validate_tau(tau: float, hidden_size: int) -> None:
    """Raise ValueError unless 0 < τ < √D; a τ at or above the bound can never flag a sink."""
    bound = phi_bound(hidden_size)
    if not (isinstance(tau, (int, float)) and math.isfinite(tau) and 0 < tau < bound):
        raise ValueError(
            f"tau={tau!r} is invalid for hidden size {hidden_size}: phi is at most sqrt({hidden_size}) = {bound:.1f}, "
            f"so tau must be in (0, {bound:.1f}); the paper's 20 applies to D = 4096"
        )


BACKBONES: dict[str, Backbone] = {
    b.name: b
    for b in [
        Backbone("llama-2-7b", 4096, (1415, 2533), PAPER_TAU,
                 "paper §3 and official code (seilk/VisAttnSink src/logic/constants.py); τ = 20 from the paper"),
        Backbone("llama-2-13b", 5120, (2100, 4743), PAPER_TAU,
                 "official code (seilk/VisAttnSink src/logic/constants.py); τ = 20 from the paper"),
        Backbone("qwen2-7b", 3584, (458, 2570), PAPER_TAU,
                 "third-party summaries for Qwen2-VL-7B, unverified (METHOD.md §2b and §5); τ = paper value"),
        Backbone("smollm2-135m", 576, (507,), PAPER_TAU,
                 "measured here (METHOD.md §4): dim 507 of the first token reaches |x| ≈ 24,900, φ ≈ 23.8; "
                 "τ = 20 < √576 = 24 kept from the paper"),
    ]
}


def get_backbone(name: str) -> Backbone:
    """Look up a backbone by registry name; the error lists the known ones."""
    try:
        return BACKBONES[name]
    except KeyError:
        raise KeyError(f"unknown backbone {name!r}; known: {sorted(BACKBONES)}") from None
