"""How the cost of the hook, of VAR and of capture grows with the number of visual tokens (tiny random LLaVA).

Run: `python -m bench.bench_scaling`. A random 8-layer LLaMA-decoder LLaVA built from configs (as the tests do) sees
one view of 8 × 8 patches (64 visual tokens), one view of 24 × 24 (576, LLaVA-1.5's count) or five views of
24 × 24 in one prompt (2,880, LLaVA-NeXT's base view + 4 tiles). For every size and mode (plain sdpa, the hook with
VAR off, VAR with τ = 0.5 so that a random model has visual sinks, capture with VAR off) it times the prefill with the first
token and, apart from it, each further generated token (a clock asked after every decoding step); it counts the
rows VAR changed and the bytes capture keeps.
Writes bench/results/scaling.json and bench/results/scaling.png.
"""

from __future__ import annotations

import statistics
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from transformers import StoppingCriteria, StoppingCriteriaList  # noqa: E402

from bench.common import RESULTS, bench_device, changed_rows, plain_generate, write  # noqa: E402
from tests.tiny_llava import tiny_llava  # noqa: E402
from var_core.config import VARConfig  # noqa: E402
from var_core.memory import trace_bytes  # noqa: E402
from var_core.models.bundle import PreparedInputs  # noqa: E402
from var_core.models.common import pixels_to_image, token_positions  # noqa: E402
from var_core.models.llava import LlavaAdapter  # noqa: E402
from var_core.run import generate  # noqa: E402

SIZES = {64: (1, 32, (8, 8)), 576: (1, 96, (24, 24)), 2880: (5, 96, (48, 60))}  # N_vis → (views, side, grid)
PATCH, LAYERS, DECODE, REPS = 4, 8, 32, 3
PROMPT = "what colour is the square ?"
VAR = VARConfig(tau=0.5)  # a random model has no massive activations: τ = 0.5 makes visual sinks exist at every size
MODES = ("plain sdpa", "hook, VAR off", "VAR (τ = 0.5)", "capture (VAR off)")
# Linear growth: VAR's and capture's extra decode time per visual token may not rise by more than this from
# 576 to 2,880 visual tokens (quadratic growth would multiply it by 5).
LINEAR_SLACK = 2.0


class ViewsAdapter(LlavaAdapter):
    """`views` copies of the image in one user turn (as LLaVA-NeXT's base view and tiles); every visual token is
    drawn as one `grid`, so capture keeps them all."""

    def __init__(self, views: int, grid: tuple[int, int]):
        self.views, self.grid = views, grid

    def prepare(self, bundle, image, prompt: str) -> PreparedInputs:
        processor = bundle.processor
        messages = [{"role": "user", "content": [{"type": "image"}] * self.views + [{"type": "text", "text": prompt}]}]
        text = processor.apply_chat_template(messages, add_generation_prompt=True)
        inputs = processor(images=[image] * self.views, text=[text], return_tensors="pt")
        return PreparedInputs(inputs=dict(inputs), grid=self.grid,
                              visual_positions=token_positions(inputs["input_ids"][0], bundle.model.config.image_token_id),
                              image=pixels_to_image(inputs["pixel_values"][0], processor.image_processor))


def sized_bundle(n_visual: int, device: torch.device, dtype: torch.dtype):
    views, side, grid = SIZES[n_visual]
    bundle = tiny_llava(image_size=side, patch=PATCH, layers=LAYERS)
    bundle.model.to(device=device, dtype=dtype)
    bundle.adapter = ViewsAdapter(views, grid)
    return bundle


class StepClock(StoppingCriteria):
    """Never stops; notes the time after every decoding step (also usable as `generate`'s `stop` signal, which is
    asked `is_set()` after every step), so decoding is timed apart from the prefill."""

    def __init__(self):
        self.times: list[float] = []

    def is_set(self) -> bool:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.times.append(time.perf_counter())
        return False

    def __call__(self, input_ids, scores, **kwargs) -> torch.BoolTensor:
        return torch.full((input_ids.shape[0],), self.is_set(), device=input_ids.device)

    def split(self, start: float) -> tuple[float, float]:
        """(prefill, seconds per further token): the longest interval since `start` is the prefill with the first
        token, the median one a decoding step (extra checks before or after the run add only short intervals)."""
        intervals = np.diff([start, *self.times])
        return float(intervals.max()), float(np.median(intervals))


def run_mode(bundle, image, mode: str, new_tokens: int, clock: StepClock | None = None):
    """One greedy run of exactly `new_tokens` tokens in `mode`; the Trace for hooked modes."""
    bundle.model.generation_config.min_new_tokens = new_tokens
    if mode == "plain sdpa":
        inputs = {k: v.to(bundle.device) for k, v in bundle.adapter.prepare(bundle, image, PROMPT).inputs.items()}
        return plain_generate(bundle, inputs, new_tokens,
                              stopping_criteria=StoppingCriteriaList([clock] if clock else []))
    config = VAR if mode.startswith("VAR") else None
    return generate(bundle, image, PROMPT, config=config, capture=mode.startswith("capture"), max_new_tokens=new_tokens,
                    stop=clock)


def timed(bundle, image, mode: str) -> tuple[float, float]:
    """(prefill with the first token, decoding per further token) of one run, in seconds."""
    clock = StepClock()
    start = time.perf_counter()
    run_mode(bundle, image, mode, 1 + DECODE, clock)
    return clock.split(start)


def captured_bytes(trace) -> int:
    """What capture kept on the device during the run (and hands over as the Trace's arrays)."""
    arrays = (trace.attn_to_visual, trace.attn_to_visual_raw, trace.visual_mass, trace.sink_mass, trace.ratio,
              trace.selected)
    return sum(array.nbytes for array in arrays if array is not None)


def measure_size(n_visual: int, device, dtype) -> dict:
    bundle = sized_bundle(n_visual, device, dtype)
    image = Image.fromarray((np.random.RandomState(0).rand(120, 150, 3) * 255).astype("uint8"))
    for mode in MODES:  # warm-up
        run_mode(bundle, image, mode, 2)
    prefill, per_token = {m: [] for m in MODES}, {m: [] for m in MODES}
    for _ in range(REPS):
        for mode in MODES:
            first, rest = timed(bundle, image, mode)
            prefill[mode].append(first)
            per_token[mode].append(rest)
    with_var = generate(bundle, image, PROMPT, config=VAR, max_new_tokens=1 + DECODE)  # counts what VAR did
    capture = run_mode(bundle, image, "capture (VAR off)", 1 + DECODE)
    tokens = len(capture.tokens)
    return {"n_visual": n_visual, "tokens": tokens, "heads": bundle.num_heads, "query_rows": len(capture.query_positions),
            "prefill_s": {m: statistics.median(prefill[m]) for m in MODES},
            "decode_ms_per_token": {m: 1000 * statistics.median(per_token[m]) for m in MODES},
            "decode_ms_spread": {m: 1000 * (max(per_token[m]) - min(per_token[m])) for m in MODES},
            "var_changed_rows_per_step": changed_rows(with_var) / len(with_var.query_positions),
            "var_rows_per_step": len(with_var.settings["var_layers"]) * with_var.num_heads,
            "captured_mib": captured_bytes(capture) / 2**20,
            "full_attention_mib": LAYERS * bundle.num_heads * tokens * tokens * 4 / 2**20}


def extra_per_visual(rows: dict, mode: str, n_visual: int) -> float:
    """Extra decode time per token over the hook with VAR off, per visual token (ms)."""
    row = rows[n_visual]["decode_ms_per_token"]
    return (row[mode] - row["hook, VAR off"]) / n_visual


def noise_per_visual(rows: dict, mode: str, n_visual: int) -> float:
    """The spread over rounds of `mode` and of the hook with VAR off (ms per token), per visual token: an extra
    time below it is not resolved, so a ratio to it would divide by noise (576 tokens once gave 0.00 µs)."""
    spread = rows[n_visual]["decode_ms_spread"]
    return (spread[mode] + spread["hook, VAR off"]) / n_visual


def plot(rows: dict, device: str):
    sizes = sorted(rows)
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for mode in MODES:
        left.plot(sizes, [rows[n]["decode_ms_per_token"][mode] for n in sizes], "o-", label=mode)
    left.set(xlabel="visual tokens", ylabel="ms per generated token", title=f"Decoding, tiny random LLaVA\n{device}")
    left.legend()
    right.plot(sizes, [rows[n]["captured_mib"] for n in sizes], "o-", label="captured (L·H·Q·N_vis, float16)")
    right.plot(sizes, [rows[n]["full_attention_mib"] for n in sizes], "s--", label="full T×T attention, every layer")
    right.set(xlabel="visual tokens", ylabel="MiB", yscale="log", title=f"Capture memory\n({LAYERS} layers, "
              f"{1 + DECODE} new tokens)")
    right.legend()
    figure.tight_layout()
    path = RESULTS / "scaling.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def main() -> dict:
    device, dtype, description = bench_device()
    dtype = dtype if device.type == "cuda" else torch.float32
    rows = {}
    for n_visual in SIZES:
        rows[n_visual] = measure_size(n_visual, device, dtype)
        row = rows[n_visual]
        print(f"N_vis {n_visual:5d}  T {row['tokens']:5d}  " + "  ".join(
            f"{mode} {row['decode_ms_per_token'][mode]:6.2f} ms/token" for mode in MODES) +
            f"  VAR changed {row['var_changed_rows_per_step']:.0f}/{row['var_rows_per_step']} rows/step"
            f"  captured {row['captured_mib']:.1f} MiB (T×T: {row['full_attention_mib']:.0f} MiB)")
    # what capture keeps per (layer, head, query row): N_vis float16 weights, 3 float32 statistics, 1 bool
    expected = {n: trace_bytes(rows[n]["heads"], rows[n]["query_rows"], n, LAYERS, var=False) / 2**20 for n in SIZES}
    checks = [{"figure": f"scaling: VAR changes rows at {n} visual tokens", "target": "> 0 (VAR acts)",
               "measured": f"{rows[n]['var_changed_rows_per_step']:.0f} of {rows[n]['var_rows_per_step']} per step",
               "pass": rows[n]["var_changed_rows_per_step"] > 0} for n in SIZES]
    for mode, name in (("VAR (τ = 0.5)", "VAR"), ("capture (VAR off)", "capture")):
        small, large = extra_per_visual(rows, mode, 576), extra_per_visual(rows, mode, 2880)
        base = max(small, noise_per_visual(rows, mode, 576))
        checks.append({"figure": f"scaling: {name}'s extra decode time per visual token, 576 → 2,880 tokens",
                       "target": f"≤ {LINEAR_SLACK}× (linear) the larger of the 576 figure and its noise",
                       "measured": f"{1000 * small:.2f} (noise {1000 * noise_per_visual(rows, mode, 576):.2f}) → "
                                   f"{1000 * large:.2f} µs ({large / base:.2f}×)",
                       "pass": large <= LINEAR_SLACK * base})
    checks.append({"figure": "scaling: capture memory = L·H·Q·(2·N_vis + 13) bytes at 64 / 576 / 2,880 visual tokens",
                   "target": "exact, ≪ L·H·T² ", "measured": " / ".join(f"{rows[n]['captured_mib']:.2f}" for n in SIZES)
                   + f" MiB (full T×T attention of every layer at 2,880: {rows[2880]['full_attention_mib']:.0f} MiB)",
                   "pass": all(abs(rows[n]["captured_mib"] - expected[n]) < 1e-9 for n in SIZES)})
    path = plot(rows, description)
    write("scaling", {"device": description, "layers": LAYERS, "decode_tokens": DECODE, "reps": REPS,
                      "rows": list(rows.values()), "plot": path.name, "checks": checks})
    return {"checks": checks}


if __name__ == "__main__":
    main()
