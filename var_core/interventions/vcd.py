"""VCD, Visual Contrastive Decoding (Leng et al., CVPR 2024; code: DAMO-NLP-SG/VCD): next-token logits contrasted
with those of the same prompt over a distorted image v′,

    l_vcd = (1 + α)·l(y | v, x) − α·l(y | v′, x),

keeping only the plausible tokens (adaptive plausibility constraint): a token y with p(y | v, x) < β·max_w p(w | v, x)
gets −∞. v′ is the image after `noise_step` steps of forward diffusion (`vcd_utils/vcd_add_noise.py`): betas =
sigmoid(linspace(−6, 6, 1000))·(0.5e−2 − 1e−5) + 1e−5, ᾱ_t = Π_{s ≤ t}(1 − β_s), v′ = sqrt(ᾱ_t)·v + sqrt(1 − ᾱ_t)·ε,
applied to the processor's normalised pixel values (as the code does to `image_processor.preprocess(...)`'s tensor),
t counted from 0 (step 500 is ᾱ[500], the product of 501 factors). The contrast branch is a second decoding pass
(`var_core.interventions.contrast`): it doubles the forward passes and runs outside the hook (no capture, no VAR, no
intervention there).

Parameters (the paper's symbols; the code's names in brackets): `alpha` α [cd_alpha], `beta` β [cd_beta],
`noise_step` T [noise_step], `seed` for ε. Defaults α = 1, β = 0.1, T = 500: the defaults of the code's evaluation
scripts (`experiments/eval/object_hallucination_vqa_*.py`).

Paper vs code (vcd_utils/vcd_sample.py), checked:
- The cut: the paper states it on probabilities, p ≥ β·max p; the code's active "version 2" states it on the raw
  logits, l ≥ log β + max l (its "version 1", on probabilities, is commented out). softmax(l) = exp(l − logsumexp l),
  so the two keep exactly the same tokens; there is nothing to select. Here: the code's form (exact for β = 0, where
  nothing is cut).
- The contrast: the paper's "logit" and the code's raw logits `outputs.logits[:, -1]` (not log-probabilities); the
  code samples from softmax of the contrasted raw logits. Contrasting log-probabilities instead shifts every token by
  the same constant, so the distribution is the same. Here: raw logits, as the code.
- Decoding: paper and code sample (do_sample=True, temperature 1, top_p 1); this project decodes greedily, i.e. the
  argmax of the same VCD distribution; the Trace records that distribution's top-5.
- Defaults: the code's `sample` falls back to cd_alpha = 0.5 when none is passed, and its POPE script
  (`cd_scripts/llava1.5_pope.bash`) passes cd_beta = 0.2; the evaluation scripts' defaults (α = 1, β = 0.1, T = 500)
  are used here.
- Noise: the code draws ε with `torch.randn_like` from the global seed; here from a generator seeded with `seed`
  (default 0) on the CPU, so a run is reproducible on every device.
- α = 0: the code would still cut (which cannot change the argmax, only the recorded distribution); here α = 0 is
  plain decoding — no branch, no cut —, so it is an exact no-op.
- transformers' own logits processors (from a generation config, e.g. a repetition penalty) act on the main
  branch's logits before this one; the code applied them after the contrast. The shipped models set none.
"""

from __future__ import annotations

import math

import torch

from var_core.interventions.base import Intervention, check_range
from var_core.interventions.contrast import ContrastProcessor

NUM_DIFFUSION_STEPS = 1000
BETA_START, BETA_END = 1e-5, 0.5e-2


def diffusion_schedule() -> torch.Tensor:
    """ᾱ_t, t = 0 … 999 [1000] float32: VCD's sigmoid beta schedule (float32, as the code computes it)."""
    betas = torch.sigmoid(torch.linspace(-6, 6, NUM_DIFFUSION_STEPS)) * (BETA_END - BETA_START) + BETA_START
    return torch.cumprod(1 - betas, dim=0)


def add_diffusion_noise(pixels: torch.Tensor, noise_step: int, seed: int = 0) -> torch.Tensor:
    """sqrt(ᾱ_t)·x + sqrt(1 − ᾱ_t)·ε, t = noise_step, ε ~ N(0, 1) from a CPU generator seeded with `seed`; computed
    in float32, returned in `pixels`' dtype and device."""
    check_range("noise_step", noise_step, 0, NUM_DIFFUSION_STEPS - 1, integer=True)
    alpha_bar = diffusion_schedule()[noise_step]
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(pixels.shape, generator=generator, dtype=torch.float32)
    noised = alpha_bar.sqrt() * pixels.detach().float().cpu() + (1 - alpha_bar).sqrt() * noise
    return noised.to(device=pixels.device, dtype=pixels.dtype)


def vcd_logits(logits: torch.Tensor, distorted: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
    """(1 + α)·logits − α·distorted, −∞ where logits < log β + max logits (⇔ p < β·max p); [..., V] float32."""
    logits, distorted = logits.float(), distorted.float()
    cutoff = (math.log(beta) if beta > 0 else -math.inf) + logits.max(dim=-1, keepdim=True).values
    contrasted = (1 + alpha) * logits - alpha * distorted
    return contrasted.masked_fill(logits < cutoff, -math.inf)


def noised_inputs(inputs: dict, noise_step: int, seed: int = 0) -> dict:
    """The model inputs with every pixel tensor (`pixel_values`, `pixel_values_*`) noised: v → v′."""
    pixels = [name for name in inputs if name == "pixel_values" or name.startswith("pixel_values_")]
    if not pixels:
        raise ValueError("VCD needs an image: these inputs have no pixel values")
    return {name: add_diffusion_noise(value, noise_step, seed) if name in pixels else value
            for name, value in inputs.items()}


class VCD(Intervention):
    """Contrastive decoding against the image noised at `noise_step` (α: contrast strength, β: plausibility cut).
    A second decoding branch: twice the forward passes and a second KV cache."""

    name = "vcd"

    def __init__(self, alpha: float = 1.0, beta: float = 0.1, noise_step: int = 500, seed: int = 0):
        self.alpha = check_range("alpha", alpha, 0.0, 10.0)
        self.beta = check_range("beta", beta, 0.0, 1.0)
        self.noise_step = check_range("noise_step", noise_step, 0, NUM_DIFFUSION_STEPS - 1, integer=True)
        self.seed = check_range("seed", seed, 0, 2**63 - 1, integer=True)

    def logits_processor(self, bundle, prepared):
        if self.alpha == 0:
            return None  # plain decoding (see the module docstring)
        alpha, beta = self.alpha, self.beta
        return ContrastProcessor(bundle.model, noised_inputs(prepared.inputs, self.noise_step, self.seed),
                                 lambda scores, distorted: vcd_logits(scores, distorted, alpha, beta))

    def settings(self) -> dict:
        return {"method": self.name, "alpha": self.alpha, "beta": self.beta, "noise_step": self.noise_step,
                "seed": self.seed}
