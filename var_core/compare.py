"""Two prompts on one image: both analyses, and where their visual sinks agree (paper: sinks stay whatever the question)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from var_core.analysis import Analysis, analyze
from var_core.config import VARConfig, checked_layers
from var_core.images import prepare_image
from var_core.models.bundle import ModelBundle
from var_core.trace import Trace


@dataclass(frozen=True)
class SharedSinks:
    """Visual sinks of run A and run B per reported layer ([k, N_vis] bool, raster order over `grid`), and their
    `overlap`: Jaccard |A ∩ B| / |A ∪ B| over every (layer, position) of the VAR layers reported (None: no sink)."""

    layers: list[int]
    grid: tuple[int, int]
    a: np.ndarray
    b: np.ndarray
    var_layers: list[int]

    @property
    def both(self) -> np.ndarray:
        """[k, N_vis] positions that are sinks in both runs."""
        return self.a & self.b

    @property
    def jaccard(self) -> np.ndarray:
        """[k] Jaccard overlap per layer; NaN where neither run has a visual sink."""
        union = (self.a | self.b).sum(1)
        return np.where(union > 0, self.both.sum(1) / np.maximum(union, 1), np.nan)

    @property
    def overlap(self) -> float | None:
        """Jaccard over the (layer, position) pairs of the VAR layers: the one-number summary."""
        rows = np.isin(self.layers, self.var_layers)
        union = int((self.a[rows] | self.b[rows]).sum())
        return float(self.both[rows].sum() / union) if union else None

    def at(self, layer: int) -> int:
        """Row of model layer `layer` on the arrays; a ValueError if it was not reported."""
        if layer not in self.layers:
            raise ValueError(f"layer {layer} is not among the compared layers {self.layers[0]} … {self.layers[-1]}")
        return self.layers.index(layer)

    def summary(self) -> dict:
        """JSON-friendly: per layer the grid indices of A's, B's and the shared sinks and their Jaccard; the overlap."""
        per_layer = [{"layer": layer, "a": np.nonzero(a)[0].tolist(), "b": np.nonzero(b)[0].tolist(),
                      "shared": np.nonzero(a & b)[0].tolist(), "jaccard": None if np.isnan(j) else float(j)}
                     for layer, a, b, j in zip(self.layers, self.a, self.b, self.jaccard)]
        return {"layers": per_layer, "var_layers": self.var_layers, "overlap": self.overlap}


def check_same_image(trace_a: Trace, trace_b: Trace) -> None:
    """ValueError unless both Traces come from one model with the same sink rule on the same image and grid."""
    for name in ("model_name", "grid", "num_layers"):
        if getattr(trace_a, name) != getattr(trace_b, name):
            raise ValueError(f"the two runs differ in {name} ({getattr(trace_a, name)} vs "
                             f"{getattr(trace_b, name)}): compare two prompts of one model")
    for name in ("tau", "sink_dims"):
        if trace_a.settings.get(name) != trace_b.settings.get(name):
            raise ValueError(f"the two runs found sinks with different {name} ({trace_a.settings.get(name)} vs "
                             f"{trace_b.settings.get(name)}): analyze both with the same settings")
    if trace_a.image.shape != trace_b.image.shape or not np.array_equal(trace_a.image, trace_b.image):
        raise ValueError("the two runs saw different images: sink positions compare only on the same image")


def shared_sinks(trace_a: Trace, trace_b: Trace, layers=None) -> SharedSinks:
    """Visual sinks of two runs on one image at `layers` (None = every layer) and where they coincide."""
    check_same_image(trace_a, trace_b)
    layers = checked_layers(layers, trace_a.num_layers)
    var_layers = sorted(set(trace_a.settings.get("var_layers") or VARConfig().resolve_layers(trace_a.num_layers)))
    return SharedSinks(layers=layers, grid=tuple(trace_a.grid), a=trace_a.visual_sinks[layers],
                       b=trace_b.visual_sinks[layers], var_layers=var_layers)


def compare_prompts(bundle: ModelBundle, image, prompts: tuple[str, str], config: VARConfig, max_new_tokens: int = 32,
                    capture_layers=None, **options) -> tuple[Analysis, Analysis]:
    """`analyze` (baseline and VAR) of prompt A then prompt B on the same image; options go to `analyze` (on_step,
    max_time, stop; on_step hears e.g. "prompt A: VAR"). ValueError for anything but two non-empty prompts or an unusable image."""
    if isinstance(prompts, str) or len(prompts) != 2:
        raise ValueError("compare needs exactly two prompts (A and B)")
    for label, prompt in zip("AB", prompts):
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"prompt {label} is empty: type a question for both A and B")
    image = prepare_image(image)
    notify = options.pop("on_step", None)
    return tuple(analyze(bundle, image, prompt, config, max_new_tokens, capture_layers=capture_layers,
                         on_step=notify and (lambda step, label=label: notify(f"prompt {label}: {step}")), **options)
                 for label, prompt in zip("AB", prompts))
