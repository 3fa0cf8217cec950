"""What an intervention is: a change to one run's attention or next-token logits, by where it acts.

Every method (VAR, PAI, VAF, SPIN, VCD) and causal probe (masking visual tokens, knocking out heads) is an
`Intervention`. The hook (`var_core.hook`) calls it at the stage it acts at, in the run's own per-request state, so
capture and every view work for every method:
- `scores`: the pre-softmax attention scores of one layer call, [1, H, Q, K] float32, the causal mask added;
- `heads`: each head's attention output of one layer call, [1, Q, H, D] before the output projection;
- `logits_processor`: next-token logits, through a transformers `LogitsProcessor` (contrastive decoding).
VAR itself acts on the post-softmax weights through `RunState.var` (`var_core.redistribute`); `VARMethod` names it
here so every method is listed, set and reported alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Site:
    """One attention call of a run, as an intervention sees it.

    layer: the decoder layer. rows: [Q] bool over this call's query rows, True for the rows interventions act on
    (the text after the image at prefill, every generated token). visual: [K] bool over this call's keys, the image
    tokens. system: [K] bool, the keys before the first image token (system prompt and chat preamble)."""

    layer: int
    rows: torch.Tensor
    visual: torch.Tensor
    system: torch.Tensor


class Intervention:
    """Acts nowhere (the baseline); a method overrides the stages it acts at and names the layers there."""

    name = "baseline"

    def check(self, num_layers: int) -> None:
        """A ValueError when a parameter does not fit a model of `num_layers` layers (e.g. a start layer past it)."""

    def acts_on_scores(self, layer: int) -> bool:
        """Whether `scores` changes layer `layer`."""
        return False

    def acts_on_heads(self, layer: int) -> bool:
        """Whether `heads` changes layer `layer`."""
        return False

    def scores(self, site: Site, scores: torch.Tensor) -> torch.Tensor:
        """Pre-softmax scores [1, H, Q, K] float32 → the scores the softmax takes (out of place or in place)."""
        return scores

    def heads(self, site: Site, output: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Per-head outputs [1, Q, H, D] (weights: [1, H, Q, K] float32 as used) → the outputs the layer keeps."""
        return output

    def logits_processor(self, bundle, prepared):
        """A `LogitsProcessor` for `generate` on this request (`prepared`: its `PreparedInputs`), or None."""
        return None

    def settings(self) -> dict:
        """The method and its parameters as the status line, exports and eval tables report them."""
        return {"method": self.name}


def check_range(name: str, value, low: float, high: float, integer: bool = False, low_open: bool = False):
    """`value` when it is a finite number in [low, high] ((low, high] with `low_open`), an int when `integer`; else a
    ValueError naming the parameter and its valid range."""
    kind = int if integer else (int, float)
    ok = isinstance(value, kind) and not isinstance(value, bool) and value == value and low <= value <= high
    if ok and low_open and value == low:
        ok = False
    if not ok:
        bracket = "(" if low_open else "["
        raise ValueError(f"{name}={value!r} must be {'an integer' if integer else 'a number'} in "
                         f"{bracket}{low:g}, {high:g}]")
    return value


def check_layers(start: int, end: int | None, num_layers: int) -> None:
    """A ValueError unless layers start … end − 1 (end None: to the last) exist in a model of `num_layers` layers."""
    check_range("start_layer", start, 0, num_layers - 1, integer=True)
    if end is not None:
        check_range("end_layer", end, start + 1, num_layers, integer=True)


def in_span(layer: int, start: int, end: int | None) -> bool:
    """Whether `layer` is in start … end − 1 (end None: every layer from start on)."""
    return layer >= start and (end is None or layer < end)
