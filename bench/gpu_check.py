"""GPU check: 7B-shaped random models in half precision at real token counts, no download, ≤ 8 minutes on one GPU.

Run: `python -m bench.gpu_check` (on a CUDA machine), or `python -m bench.gpu_check --layers 2 --tokens small
--device cpu` as a smoke run. For LLaVA-1.5-7B's shape (576 visual tokens) and Qwen2-VL-7B's (≈ 1,200 visual
tokens, q/k biases planted so that float16 QKᵀ overflows), each in bfloat16 and float16, built directly on the
device from configs with random weights and local processors, it measures:
- ms per generated token: hook off (transformers' sdpa `model.generate`), VAR (capture off), capture (VAR off);
- Analyze (baseline + VAR run, both with capture): seconds, non-finite values in the Traces;
- p = 0 VAR against sdpa: the first token's logits (max abs difference) and the answers;
- every explanation map (`var_core.explain.explain`, VAR on): seconds, non-finite values;
- peak device memory per step (torch.cuda.max_memory_allocated, reset before each) beside var_core.memory's
  estimate of that step; and, as the proof that the planted biases bite, transformers' eager attention in float16.
Prints one table; writes `--out` (bench/results/gpu_check.json).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import StoppingCriteriaList

from bench.bench_scaling import StepClock
from bench.common import RESULTS, llava_7b_shaped, machine, plain_generate, qwen2_vl_7b_shaped
from var_core import memory
from var_core.config import VARConfig
from var_core.explain import explain
from var_core.hook import attention_hook
from var_core.run import generate, prepare_run

PROMPT = "what colour is the square ?"
QWEN_BIAS = 300.0
IMAGES = {("llava", "real"): (336, 336), ("llava", "small"): (336, 336),  # CLIP-L/336 always gives 576 tokens
          ("qwen", "real"): (840, 1120), ("qwen", "small"): (224, 224)}  # 30 × 40 = 1,200 / 8 × 8 = 64 tokens
VAR = VARConfig()


def build(model: str, layers: int | None, dtype: torch.dtype, device: str):
    """The 7B-shaped bundle, with `layers` decoder layers (and at most that many vision layers) when given."""
    if model == "llava":
        return llava_7b_shaped(layers=layers or 32, dtype=dtype, device=device, vision_depth=min(layers or 24, 24))
    return qwen2_vl_7b_shaped(layers=layers or 28, dtype=dtype, device=device, vision_depth=min(layers or 32, 32),
                              bias=QWEN_BIAS)


def measured(device: torch.device, step):
    """(result of step(), seconds, peak device bytes or None off CUDA)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    result = step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    return result, seconds, torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None


def non_finite(*arrays) -> int:
    """Count of NaN or ±inf values over float arrays (None skipped)."""
    return int(sum((~np.isfinite(np.asarray(a, dtype=np.float32))).sum() for a in arrays if a is not None))


def trace_non_finite(trace) -> int:
    return non_finite(trace.attn_to_visual, trace.attn_to_visual_raw, trace.visual_mass, trace.sink_mass, trace.ratio)


def ms_per_token(bundle, image, inputs, mode: str, new_tokens: int) -> float:
    """Median decoding step (ms) of one run of `new_tokens` in `mode` (hook off / VAR / capture)."""
    clock = StepClock()
    start = time.perf_counter()
    if mode == "hook off":
        plain_generate(bundle, inputs, new_tokens, stopping_criteria=StoppingCriteriaList([clock]))
    else:
        generate(bundle, image, PROMPT, config=VAR if mode == "VAR" else None, capture=mode == "capture",
                 max_new_tokens=new_tokens, stop=clock)
    return 1000 * clock.split(start)[1]


@torch.no_grad()
def first_logits(bundle, image, inputs, hooked: bool) -> torch.Tensor:
    """The last prompt row's logits [V] float32: through the hook with p = 0 VAR, or transformers' sdpa."""
    if not hooked:
        bundle.model.set_attn_implementation("sdpa")
        return bundle.model(**inputs).logits[0, -1].float()
    _, state = prepare_run(bundle, image, PROMPT, VARConfig(p=0.0), capture=False)
    with attention_hook(bundle.model, bundle.adapter.decoder_layers(bundle.model), state):
        return bundle.model(**inputs).logits[0, -1].float()


def eager_non_finite(bundle, inputs) -> int:
    """Non-finite first-token logits with transformers' own eager attention (no hook): the planted biases' effect."""
    bundle.model.set_attn_implementation("eager")
    with torch.no_grad():
        return non_finite(bundle.model(**inputs).logits[0, -1].float().cpu().numpy())


def check_one(model: str, dtype: torch.dtype, args) -> dict:
    """Every measurement for one model in one dtype."""
    device = torch.device(args.device)
    bundle = build(model, args.layers, dtype, args.device)
    height, width = IMAGES[model, args.tokens]
    image = Image.fromarray((np.random.RandomState(0).rand(height, width, 3) * 255).astype("uint8"))
    prepared = bundle.adapter.prepare(bundle, image, PROMPT)
    inputs = {k: v.to(device) for k, v in prepared.inputs.items()}
    tokens, visual = prepared.inputs["input_ids"].shape[1], len(prepared.visual_positions)
    shape = memory.model_shape(bundle.model)
    generate(bundle, image, PROMPT, config=VAR, max_new_tokens=2)  # warm-up: kernels, allocator
    bundle.model.generation_config.min_new_tokens = args.new_tokens  # every mode decodes the same length
    speed = {mode: ms_per_token(bundle, image, inputs, mode, args.new_tokens) for mode in ("hook off", "VAR", "capture")}
    (baseline, with_var), analyze_s, analyze_peak = measured(device, lambda: (
        generate(bundle, image, PROMPT, max_new_tokens=args.new_tokens),
        generate(bundle, image, PROMPT, config=VAR, max_new_tokens=args.new_tokens)))
    sdpa_logits, ours_logits = (first_logits(bundle, image, inputs, hooked) for hooked in (False, True))
    sdpa_answer = bundle.tokenizer.decode(plain_generate(bundle, inputs, args.new_tokens)[0, tokens:],
                                          skip_special_tokens=True).strip()
    p_zero = generate(bundle, image, PROMPT, config=VARConfig(p=0.0), capture=False, max_new_tokens=args.new_tokens)
    explanation, explain_s, explain_peak = measured(device, lambda: explain(bundle, image, PROMPT, config=VAR))
    analyze_estimate = memory.estimate(shape, tokens, visual, args.new_tokens, bundle.num_layers, var=True)
    explain_estimate = memory.estimate(shape, tokens, visual, explanation=True)
    return {"model": bundle.name, "dtype": str(dtype).removeprefix("torch."), "layers": bundle.num_layers,
            "prompt_tokens": tokens, "visual_tokens": visual, "ms_per_token": speed, "analyze_s": analyze_s,
            "analyze_peak_gb": analyze_peak / memory.GB if analyze_peak else None,
            "analyze_estimate_gb": analyze_estimate.total / memory.GB,
            "explain_s": explain_s, "explain_peak_gb": explain_peak / memory.GB if explain_peak else None,
            "explain_estimate_gb": (explain_estimate.weights + explain_estimate.kv_cache
                                    + explain_estimate.explanation) / memory.GB,
            "trace_non_finite": trace_non_finite(baseline) + trace_non_finite(with_var),
            "maps_non_finite": non_finite(*explanation.maps.values()),
            "p0_logits_max_abs_diff": float((ours_logits - sdpa_logits).abs().max()),
            "p0_answer_equals_sdpa": p_zero.answer == sdpa_answer, "answer": with_var.answer,
            "eager_non_finite_logits": eager_non_finite(bundle, inputs)}


def table(rows: list[dict]) -> str:
    """One compact line per model and dtype."""
    head = ("model                 dtype     T     N  off/VAR/capture ms/tok  Analyze s  peak/est GB   explain s  "
            "peak/est GB  non-finite  p=0 Δlogit  =sdpa  eager inf")
    lines = [head]
    for r in rows:
        gb = lambda peak, est: f"{peak:.1f}/{est:.1f}" if peak is not None else f"–/{est:.1f}"  # noqa: E731
        speed = "/".join(f"{r['ms_per_token'][m]:.0f}" for m in ("hook off", "VAR", "capture"))
        lines.append(f"{r['model']:21s} {r['dtype']:8s} {r['prompt_tokens']:5d} {r['visual_tokens']:5d}  {speed:22s} "
                     f"{r['analyze_s']:9.1f}  {gb(r['analyze_peak_gb'], r['analyze_estimate_gb']):12s} "
                     f"{r['explain_s']:9.1f}  {gb(r['explain_peak_gb'], r['explain_estimate_gb']):12s} "
                     f"{r['trace_non_finite'] + r['maps_non_finite']:10d}  {r['p0_logits_max_abs_diff']:10.4f}  "
                     f"{'yes' if r['p0_answer_equals_sdpa'] else 'NO':5s}  {r['eager_non_finite_logits']}")
    return "\n".join(lines)


def parse(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=None, help="decoder layers (default: the real 32 / 28)")
    parser.add_argument("--tokens", choices=("real", "small"), default="real", help="real (≈ 600 / 1,300) or 64")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtypes", default="bfloat16,float16")
    parser.add_argument("--models", default="llava,qwen")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--out", type=Path, default=RESULTS / "gpu_check.json")
    return parser.parse_args(argv)


def main(argv=None) -> list[dict]:
    args = parse(argv)
    start = time.perf_counter()
    rows = []
    for model in args.models.split(","):
        for name in args.dtypes.split(","):
            rows.append(check_one(model, getattr(torch, name), args))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
            if args.device.startswith("cuda"):
                torch.cuda.empty_cache()
    print(table(rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()},
                                    "minutes": (time.perf_counter() - start) / 60, "rows": rows}, indent=1))
    return rows


if __name__ == "__main__":
    main()
