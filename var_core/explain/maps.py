"""Four answers to "where did the model look?" for its first answer token, each a map over the visual grid.

Every map is an [rows, cols] float32 array, non-negative and summing to 1 (all zeros only when a method finds no
positive evidence anywhere). With `config`, the forward passes run with VAR active, so VAR's effect on every map
can be compared with the baseline's. "The answer token's row" is the last prompt token's: its logits give the
first answer token.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from var_core.config import VARConfig, checked_layers
from var_core.explain.forward import AnswerForward, answer_forward
from var_core.explain.rules import normalised, relative
from var_core.interventions.base import Intervention
from var_core.layout import on_cells
from var_core.limits import Deadline
from var_core.models.bundle import ModelBundle

GENERIC_PROMPT = "Write a general description of the image."
RELATIVE_FLOOR = 0.01  # the generic attention is floored at 1 % of its mean before dividing
METHODS = ("raw attention", "relevancy", "relative attention", "activation map")


def _layer_rows(forward: AnswerForward, layers: list[int]) -> torch.Tensor:
    """[N_grid] the answer row's attention, mean over heads and over `layers`."""
    return forward.attention[layers].mean(0)


def _grid_map(values: torch.Tensor, cells: np.ndarray) -> np.ndarray:
    """[N_grid] values → normalised, at their cells of the layout ([rows, cols], NaN where no token)."""
    return on_cells(normalised(values).numpy(), cells)


def relevancy(bundle: ModelBundle, image, prompt: str, config: VARConfig | None = None,
              answer: str | None = None) -> np.ndarray:
    """Chefer et al. 2021's relevancy (as LVLM-Interpret uses it): R = I; per layer Ā = mean over heads of
    (∇A ⊙ A)⁺, with ∇A the gradient of the answer token's logit; R ← R + Ā·R; the answer row over the grid.
    Cost: one forward and one backward pass over the prompt, plus L·T² floats for the Ā (T = prompt length)."""
    forward = answer_forward(bundle, image, prompt, config, answer, gradients=True)
    return _grid_map(forward.relevancy, forward.cells)


def relative_attention(bundle: ModelBundle, image, prompt: str, config: VARConfig | None = None,
                       answer: str | None = None, generic_prompt: str = GENERIC_PROMPT,
                       layers: Sequence[int] | None = None) -> np.ndarray:
    """"MLLMs know where to look" (ICLR 2025): the answer row's attention to the image (mean over heads and `layers`,
    default all) divided element-wise by the same under `generic_prompt`, renormalised; attention that does not
    depend on the question (sinks among it) cancels. The answer token does not change an attention row; `answer`
    is accepted for a uniform signature. Cost: two forward passes without gradients."""
    layers = checked_layers(layers, bundle.num_layers)
    question = answer_forward(bundle, image, prompt, config, answer)
    generic = answer_forward(bundle, image, generic_prompt, config)
    return _grid_map(relative(_layer_rows(question, layers), _layer_rows(generic, layers), RELATIVE_FLOOR),
                     question.cells)


def activation_map(bundle: ModelBundle, image, prompt: str, config: VARConfig | None = None,
                   answer: str | None = None) -> np.ndarray:
    """The base of Token Activation Maps (ICCV 2025): each visual token's last-layer hidden state (after the final
    norm) through the LM head, the answer token's logit, positive part, normalised. Cost: one forward pass."""
    forward = answer_forward(bundle, image, prompt, config, answer)
    return _grid_map(forward.logits, forward.cells)


@dataclass
class Explanation:
    """The four maps of one run (baseline or VAR) for its first answer token, and where its visual sinks are.

    maps: method (METHODS order) → [rows, cols] on the layout's cells (NaN where a tiled model's canvas has no
    token); raw attention is the answer row's, mean over heads and
    `attention_layers` (relative attention too). sink_patches: [rows, cols] bool, grid cells that are visual sinks
    in a layer VAR may act on.
    """

    answer_token: str
    var: bool
    image: np.ndarray
    maps: dict[str, np.ndarray]
    sink_patches: np.ndarray
    attention_layers: list[int]

    def mass_on_sinks(self) -> dict[str, float]:
        """Per method, the share of the map that falls on visual sink patches (how much a sink explains)."""
        return {method: float(values[self.sink_patches].sum()) for method, values in self.maps.items()}

    def _repr_html_(self) -> str:
        """Jupyter: the four maps with the sink patches framed (drawn by `viz.notebook`, imported only here)."""
        from viz.notebook import explanation_html

        return explanation_html(self)

    def summary(self) -> dict:
        """JSON-friendly: the answer token, every map as nested lists, and each map's share on visual sinks."""
        return {"answer_token": self.answer_token, "var": self.var, "attention_layers": self.attention_layers,
                "maps": {method: json_map(values) for method, values in self.maps.items()},
                "sink_patches": self.sink_patches.tolist(), "mass_on_visual_sinks": self.mass_on_sinks()}


def json_map(values: np.ndarray) -> list[list[float | None]]:
    """A [rows, cols] map as nested lists, None where no token is drawn (JSON has no NaN)."""
    return [[None if np.isnan(value) else float(value) for value in row] for row in values]


def explain(bundle: ModelBundle, image, prompt: str, config: VARConfig | None = None, answer: str | None = None,
            generic_prompt: str = GENERIC_PROMPT, layers: Sequence[int] | None = None,
            deadline: Deadline | None = None, intervention: Intervention | None = None) -> Explanation:
    """All four maps of one run at the cost of two forward passes and one backward pass: the question's pass
    gives raw attention, relevancy and the activation map; the generic prompt's pass gives relative attention.
    intervention: another method's attention changes in both passes (`var_core.interventions`; a logits-only
    method such as VCD changes no map, only which answer token they explain).
    deadline: a stop signal and time limit for all three passes (`var_core.limits`), checked at every layer."""
    layers = checked_layers(layers, bundle.num_layers)
    question = answer_forward(bundle, image, prompt, config, answer, gradients=True, deadline=deadline,
                              intervention=intervention)
    generic = answer_forward(bundle, image, generic_prompt, config, deadline=deadline, intervention=intervention)
    rows = _layer_rows(question, layers)
    values = {"raw attention": rows, "relevancy": question.relevancy,
              "relative attention": relative(rows, _layer_rows(generic, layers), RELATIVE_FLOOR),
              "activation map": question.logits}
    return Explanation(answer_token=question.answer_token, var=config is not None, image=question.image,
                       maps={method: _grid_map(values[method], question.cells) for method in METHODS},
                       sink_patches=on_cells(question.sink_patches.numpy(), question.cells), attention_layers=layers)


def save_explanations(explanations: dict[str, Explanation], path) -> Path:
    """Write runs' maps as a pickle-free `.npz`: `<run>/<method>` [rows, cols], `<run>/sink_patches`, `<run>/image`,
    and the answer tokens as a JSON string under `answer_tokens`."""
    arrays = {}
    for run, explanation in explanations.items():
        arrays.update({f"{run}/{method}": values for method, values in explanation.maps.items()})
        arrays[f"{run}/sink_patches"], arrays[f"{run}/image"] = explanation.sink_patches, explanation.image
    tokens = {run: explanation.answer_token for run, explanation in explanations.items()}
    path = Path(path)
    np.savez_compressed(path, answer_tokens=np.array(json.dumps(tokens)), **arrays)
    return path
