"""The two causal probes by name, as the app, the API and `eval compare` run them: each is built from a baseline
run of the same request (what to mask or knock out is read off it) and reports the change in the baseline answer
token's probability (`effects.answer_change`).

- `mask`: visual tokens masked for the text after the image and every generated token, in every layer — the
  baseline's visual sinks (default), one patch, or as many random non-sinks (`masking.tokens_to_mask`).
- `knockout`: head outputs zeroed on the same rows — explicit (layer, head) pairs, or the baseline's `top` most
  image-centric pairs (the share of answer rows VAR's rule selects, over the captured layers).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from var_core.interventions.base import Intervention, check_range
from var_core.interventions.knockout import HeadKnockout
from var_core.interventions.masking import CHOICES, MaskTokens, tokens_to_mask
from var_core.trace import Trace, answer_rows


@dataclass(frozen=True)
class Probe:
    """One probe: `check(**params)` refuses bad parameters before any model work; `build(baseline, **params)` gives
    its Intervention for the request `baseline` ran."""

    name: str
    title: str
    changes: str
    defaults: dict = field(default_factory=dict)


def image_centric_pairs(baseline: Trace, top: int) -> list[tuple[int, int]]:
    """The `top` (layer, head) pairs whose answer rows VAR's image-centric rule selects most often in `baseline`
    (captured layers only; ties: lower layer, then lower head), pairs never selected left out."""
    rows = answer_rows(baseline)
    if not len(rows):
        raise ValueError("the baseline captured no answer row: nothing ranks its heads")
    share = baseline.selected[:, :, rows].mean(axis=-1)  # [k, H]
    ranked = sorted((-float(share[slot, head]), int(layer), head) for slot, layer in enumerate(baseline.layers_captured)
                    for head in range(share.shape[1]) if share[slot, head] > 0)
    return [(layer, head) for _, layer, head in ranked[:top]]


def _check_mask(tokens="sinks", patch=None, seed=0) -> None:
    if tokens not in CHOICES:
        raise ValueError(f"tokens={tokens!r} must be one of {', '.join(CHOICES)}")
    if patch is not None:
        check_range("patch", patch, 0, 10**9, integer=True)
    if tokens == "patch" and patch is None:
        raise ValueError("tokens='patch' needs patch, a visual token index")
    check_range("seed", seed, 0, 2**32 - 1, integer=True)


def _check_knockout(heads=None, top=8) -> None:
    HeadKnockout(heads or ())  # the pairs' own checks
    check_range("top", top, 1, 10_000, integer=True)


def _build_mask(baseline: Trace, tokens="sinks", patch=None, seed=0) -> Intervention:
    _check_mask(tokens, patch, seed)
    positions, label = tokens_to_mask(baseline, tokens, patch, seed)
    return MaskTokens(positions, label)


def _build_knockout(baseline: Trace, heads=None, top=8) -> Intervention:
    _check_knockout(heads, top)
    pairs = heads or image_centric_pairs(baseline, top)
    if not pairs:
        raise ValueError("the baseline has no image-centric head in its captured layers: name the heads to knock out")
    return HeadKnockout(pairs)


PROBES: dict[str, Probe] = {probe.name: probe for probe in (
    Probe("mask", "Mask tokens (probe)", "visual tokens masked (−∞ before the softmax) for the rows after the image, "
          "every layer: the sinks, a patch or a random set of the same size", {"tokens": "sinks", "patch": None,
                                                                                "seed": 0}),
    Probe("knockout", "Knock out heads (probe)", "head outputs zeroed for the rows after the image: named (layer, "
          "head) pairs or the baseline's top image-centric ones", {"heads": None, "top": 8}),
)}
_CHECKS = {"mask": _check_mask, "knockout": _check_knockout}
_BUILDS = {"mask": _build_mask, "knockout": _build_knockout}


def probe(name: str) -> Probe:
    """The probe called `name`; a ValueError listing the known ones."""
    if name not in PROBES:
        raise ValueError(f"unknown probe {name!r}; choose from {', '.join(PROBES)}")
    return PROBES[name]


def _params(name: str, params: dict) -> dict:
    unknown = set(params) - set(probe(name).defaults)
    if unknown:
        raise ValueError(f"{probe(name).title} takes {', '.join(probe(name).defaults)}; not "
                         f"{', '.join(sorted(unknown))}")
    return {**probe(name).defaults, **params}


def check_probe(name: str, **params) -> None:
    """A ValueError naming the parameter when `params` cannot build probe `name` on any baseline."""
    _CHECKS[name](**_params(name, params))


def build_probe(name: str, baseline: Trace, **params) -> Intervention:
    """Probe `name`'s Intervention for the request `baseline` ran (its defaults, `params` overriding)."""
    return _BUILDS[name](baseline, **_params(name, params))
