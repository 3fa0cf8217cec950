"""Every method by name — what it changes, where, at what cost, its paper and its defaults — and one way to run any
of them on one request, so the app, the API and `eval compare` run the same code with the same settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields

from var_core.config import VARConfig
from var_core.interventions.base import Intervention
from var_core.interventions.pai import PAI
from var_core.interventions.spin import SPIN
from var_core.interventions.vaf import VAF
from var_core.interventions.vcd import VCD
from var_core.trace import Trace


@dataclass(frozen=True)
class Method:
    """One training-free fix: `build(**params)` gives the VARConfig (VAR), an Intervention, or None (baseline)."""

    name: str
    title: str
    acts_on: str  # where it changes the computation
    changes: str  # what it changes, in a line
    cost: str  # extra work per generated token
    paper: str
    build: Callable[..., VARConfig | Intervention | None]
    defaults: dict = field(default_factory=dict)  # its paper's settings for LLaVA-1.5-7B


def var_defaults() -> dict:
    """VARConfig's defaults as the settings VAR is built from (the official config's, in the paper's convention)."""
    return {f.name: getattr(VARConfig(), f.name) for f in fields(VARConfig) if f.name in ("p", "rho", "min_visual_mass")}


METHODS: dict[str, Method] = {method.name: method for method in (
    Method("baseline", "Baseline", "—", "nothing: the model as published", "none", "—", lambda: None),
    Method("var", "VAR", "post-softmax weights", "sink attention recycled to non-sink image tokens in image-centric "
           "heads", "≈ 1.0–1.05× (explicit attention in VAR layers)",
           "Kang et al., ICLR 2025 (See What You Are Told)", lambda **params: VARConfig(**params), var_defaults()),
    Method("pai", "PAI", "pre-softmax scores (+ logits with γ > 1)", "image scores of the predicting row amplified by "
           "α·|s|; γ guides away from the text-only input", "explicit attention in its layers; γ > 1: a second "
           "decoding branch (≈ 2×)", "Liu et al., ECCV 2024 (Paying More Attention to Image)", PAI,
           {"alpha": 0.2, "start_layer": 2, "end_layer": 32, "gamma": 1.1}),
    Method("vaf", "VAF (ClearSight)", "pre-softmax scores", "image scores × enh_para, system-prompt scores × "
           "sup_para, middle layers", "explicit attention in 6 layers", "Yin et al., CVPR 2025 (ClearSight)", VAF,
           {"enh_para": 1.15, "sup_para": 0.95, "start_layer": 9, "end_layer": 15}),
    Method("spin", "SPIN", "head outputs (ranked at the pre-softmax scores)", "per predicting row, the heads with the "
           "least image attention suppressed (× small_num_mask; 0: zeroed), the top routed_heads share kept",
           "explicit attention in its layers (scores ranked, outputs gated)",
           "Sarkar, Che et al., EMNLP 2025 (code YUECHE77/SPIN)", SPIN,
           {"routed_heads": 0.95, "small_num_mask": None, "start_layer": 0, "end_layer": 32, "rows": "last",
            "score": "scores"}),
    Method("vcd", "VCD", "next-token logits", "(1 + α)·l(y | v, x) − α·l(y | v′, x) against a diffusion-noised "
           "image v′, plausibility cut β", "a second decoding branch: ≈ 2× the forward passes, a second KV cache",
           "Leng et al., CVPR 2024 (code DAMO-NLP-SG/VCD)", VCD,
           {"alpha": 1.0, "beta": 0.1, "noise_step": 500, "seed": 0}),
)}


def method(name: str) -> Method:
    """The method called `name`; a ValueError listing the known ones."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    return METHODS[name]


def build(name: str, **params) -> VARConfig | Intervention | None:
    """The method's VARConfig / Intervention / None with its defaults, `params` overriding them; a ValueError naming
    a parameter the method does not take, or one out of its range."""
    chosen = method(name)
    unknown = set(params) - set(chosen.defaults)
    if unknown:
        raise ValueError(f"{chosen.title} takes {', '.join(chosen.defaults) or 'no parameters'}; not "
                         f"{', '.join(sorted(unknown))}")
    return chosen.build(**{**chosen.defaults, **params})


def run_method(bundle, image, prompt: str, name: str, params: dict | None = None, **options) -> Trace:
    """`var_core.run.generate` with method `name` (its defaults, `params` overriding); options go to generate
    (max_new_tokens, measure, capture_layers, stop, max_time…). The Trace's settings name the method."""
    from var_core.run import generate

    built = build(name, **(params or {}))
    if isinstance(built, VARConfig):
        trace = generate(bundle, image, prompt, config=built, **options)
    else:
        trace = generate(bundle, image, prompt, intervention=built, **options)
    trace.settings["method"] = method_settings(built)
    return trace


def method_settings(built: VARConfig | Intervention | None) -> dict:
    """What a run's status line and exports report of its method: the name and the parameters it ran with."""
    if isinstance(built, Intervention):
        return built.settings()
    if isinstance(built, VARConfig):
        return {"method": "var", **{name: getattr(built, name) for name in var_defaults()}}
    return {"method": "baseline"}
