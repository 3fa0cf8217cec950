"""Low-rank adapters (LoRA) on a decoder's linear projections: trained as a delta, shipped small, merged at load.

W' = W + (alpha / rank) · B A, with A [rank, in] and B [out, rank]. B starts at zero, so a fresh adapter leaves
the model unchanged. The default model ships A and B (float16) beside its tower and projector; `merge_lora`
folds them into the base weights once, so inference runs the plain model at no extra cost.
"""

from __future__ import annotations

import torch
from torch import nn

PROJECTIONS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
               "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
PREFIX = "lora."  # key prefix of adapter tensors in a state file: lora.<linear's name>.A / .B


class LoRALinear(nn.Module):
    """A frozen nn.Linear plus a trainable low-rank update; same call signature as the linear it wraps."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float):
        super().__init__()
        self.base, self.scale = base, alpha / rank
        self.A = nn.Parameter(torch.randn(rank, base.in_features) * 0.01)  # as the probe of METHOD.md §4b
        self.B = nn.Parameter(torch.zeros(base.out_features, rank))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.A.T @ self.B.T) * self.scale


def target_linears(decoder: nn.Module, layers=None) -> dict[str, nn.Linear]:
    """The adaptable projections of the decoder layers `layers` (None: all), by their names relative to `decoder`."""
    return {f"layers.{i}.{name}": layer.get_submodule(name)
            for i, layer in enumerate(decoder.layers) if layers is None or i in layers for name in PROJECTIONS}


def _replace(decoder: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(decoder.get_submodule(parent), child, module)


def add_lora(decoder: nn.Module, rank: int, alpha: float, layers=None) -> list[nn.Parameter]:
    """Wrap every projection of the decoder layers `layers` (None: all) in a LoRALinear; returns the new (trainable)
    parameters."""
    params = []
    for name, linear in target_linears(decoder, layers).items():
        wrapped = LoRALinear(linear, rank, alpha)
        _replace(decoder, name, wrapped)
        params += [wrapped.A, wrapped.B]
    return params


def lora_state(decoder: nn.Module) -> dict[str, torch.Tensor]:
    """The adapters of a wrapped decoder as `lora.<name>.A/B` tensors (what gets shipped)."""
    return {f"{PREFIX}{name}.{part}": getattr(module, part).detach()
            for name, module in decoder.named_modules() if isinstance(module, LoRALinear) for part in ("A", "B")}


@torch.no_grad()
def load_lora(decoder: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy `lora.<name>.A/B` tensors into the LoRALinear modules of a wrapped decoder (to resume training)."""
    for name, module in decoder.named_modules():
        if isinstance(module, LoRALinear):
            module.A.copy_(state[f"{PREFIX}{name}.A"])
            module.B.copy_(state[f"{PREFIX}{name}.B"])


@torch.no_grad()
def merge_lora(decoder: nn.Module, state: dict[str, torch.Tensor], alpha: float) -> int:
    """Fold `lora.<name>.A/B` tensors from `state` into the plain linears of `decoder` (computed in float32);
    returns how many linears changed. Unknown names raise, so a mismatched file cannot load silently."""
    linears = target_linears(decoder)
    names = {key[len(PREFIX):].rsplit(".", 1)[0] for key in state if key.startswith(PREFIX)}
    unknown = names - set(linears)
    if unknown:
        raise KeyError(f"adapter for unknown projections: {sorted(unknown)[:3]}")
    for name in names:
        a, b = state[f"{PREFIX}{name}.A"].float(), state[f"{PREFIX}{name}.B"].float()
        weight = linears[name].weight
        weight += ((alpha / a.shape[0]) * (b @ a)).to(weight.dtype)
    return len(names)
