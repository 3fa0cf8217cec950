"""Half precision on a model with Qwen2-style large q/k biases: plain eager attention breaks, the hook does not."""

import numpy as np
import pytest
import torch

from tests.planted import planted_bias_llava
from var_core.config import VARConfig
from var_core.run import generate

PROMPT = "what colour is the square ?"
VAR = VARConfig(p=0.6, tau=1.0, rho=0.0, min_visual_mass=0.0, layers=(0, 1))  # acts here: sinks at τ = 1, every head
TOLERANCE = {torch.float16: 0.02, torch.bfloat16: 0.05}


@pytest.fixture(scope="module")
def reference(noise_image):
    return generate(planted_bias_llava(torch.float32), noise_image, PROMPT, VAR, max_new_tokens=6)


def eager_attention(bundle, image):
    """transformers' own eager path: the last layer's attention and the logits."""
    bundle.model.set_attn_implementation("eager")
    with torch.no_grad():
        out = bundle.model(**bundle.adapter.prepare(bundle, image, PROMPT).inputs, output_attentions=True)
    return out.attentions[-1].float(), out.logits.float()


def test_plain_eager_attention_breaks_in_both_half_precisions(noise_image):
    """The condition the hook must survive is really there: float16 overflows (non-finite), bfloat16 rounds
    the scores so coarsely that the attention is far from float32's."""
    exact, _ = eager_attention(planted_bias_llava(torch.float32), noise_image)
    half, logits = eager_attention(planted_bias_llava(torch.float16), noise_image)
    assert not torch.isfinite(half).all() and not torch.isfinite(logits).all()
    brain, _ = eager_attention(planted_bias_llava(torch.bfloat16), noise_image)
    assert (brain - exact).abs().max() > 0.2


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
def test_hooked_half_precision_matches_float32(reference, noise_image, dtype):
    trace = generate(planted_bias_llava(dtype), noise_image, PROMPT, VAR, max_new_tokens=6)
    assert trace.tokens == reference.tokens  # the same answer, token for token
    for name in ("attn_to_visual", "attn_to_visual_raw"):
        ours, exact = getattr(trace, name).astype(np.float32), getattr(reference, name).astype(np.float32)
        assert np.isfinite(ours).all()
        assert np.abs(ours - exact).max() <= TOLERANCE[dtype], name
    changed = np.abs(trace.attn_to_visual.astype(np.float32) - trace.attn_to_visual_raw.astype(np.float32)) > 1e-3
    assert changed.any()  # VAR acted in the half-precision run
    assert trace.settings["dtype"] == str(dtype).removeprefix("torch.")
