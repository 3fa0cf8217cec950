"""Settings a client sends, checked before any work, and the model-dependent defaults the page shows."""

from __future__ import annotations

import re
import time

import gradio as gr

from var_core.config import VARConfig, checked_layers
from var_core.images import pad_to_square as padded_square, prepare_image
from var_core.inputs import flag, listed, number
from var_core.models.catalog import ModelLoadError
from var_core.models.common import padding_colour, preset_of
from var_core.models.default import KNOWS as DEFAULT_MODEL_KNOWS, NAME as DEFAULT_MODEL_NAME
from var_core.registry import phi_bound
from var_core.run import ATTENTION_NUMERICS
from var_core import examples as shipped_examples

from ui import state


EXAMPLES_DIR = shipped_examples.FOLDER
MAX_NEW_TOKENS_UI = 128
FULL_CAPTURE_LAYERS, FULL_CAPTURE_HIDDEN, CAPTURE_STRIDE = 16, 1024, 4  # see default_capture
MAX_CAPTURE_CHARS = 200
MAX_ANSWER_CHARS = 200  # an answer to explain: only its first token is used
SAMPLES_RANGE = (4, 80)  # samples of a quick experiment
DEFAULTS = {"p": 0.4, "rho": 0.5, "min_visual_mass": 0.2, "max_new_tokens": 24}
RETRY_AFTER_S = 60  # a model that failed to load is not tried again on the same page event for this long
RECENT_FAILURES: dict[str, float] = {}  # model id → when it last failed to load
MODEL_FIELDS = 8  # what model_settings fills: τ, the VAR layers (2), the picker, its info, map layers (2), capture


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


def layers_to_capture(bundle, capture) -> list[int] | None:
    """The 'layers to capture' field as `capture_layers` reads it, the model's default when it is empty."""
    return capture_layers(capture if str(capture or "").strip() else default_capture(bundle), bundle.num_layers)


def nearest_captured(layers: list[int], layer) -> int:
    """The captured layer nearest to `layer` (the lower one on a tie; layer 0 when none is given)."""
    target = int(layer if layer is not None else 0)
    return min(layers, key=lambda captured: (abs(captured - target), captured))


def captured_text(layers: list[int], num_layers: int) -> str:
    """'all 30' or '0, 4, 8 … 31 (9 of 32)': which layers' attention a Trace holds, for labels and the status."""
    if len(layers) == num_layers:
        return f"all {num_layers}"
    shown = listed(layers, 6, last=True)
    return f"{shown} ({len(layers)} of {num_layers})"


def model_image(bundle, image, square: bool):
    """The upload as the model gets it: checked (`prepare_image`) and, when the user asked, padded to a square of
    the processor's mean colour, so a processor that centre-crops keeps all of it."""
    image = prepare_image(image)
    return padded_square(image, padding_colour(bundle)) if square else image


def model_info(bundle) -> str:
    """Depth, width, dtype, device and attention numerics of the loaded model, under the model picker; for the
    embedded default model also what it knows (shapes, not photos)."""
    dtype = str(bundle.model.dtype).removeprefix("torch.")
    preset = " · paper preset (pad to square, vicuna_v1 prompt)" if preset_of(bundle) == "paper" else ""
    note = f"  \n**What this model knows:** {DEFAULT_MODEL_KNOWS}." if bundle.name == DEFAULT_MODEL_NAME else ""
    return (f"{bundle.num_layers} layers × {bundle.num_heads} heads · {dtype} on {bundle.device} · "
            f"attention {ATTENTION_NUMERICS}{preset}{note}")


def model_settings(model_id):
    """Load the chosen model; fill τ, the VAR layer range, the explanation's layer range (every layer) and the
    layers to capture from its registry entry and depth, and describe it under the picker."""
    try:
        bundle = state.slot.get(model_id)
    except ModelLoadError as error:
        RECENT_FAILURES[model_id] = time.monotonic()
        state.LOG.info("model %s could not be loaded; keeping %s", model_id, state.slot.current_id)
        gr.Warning(f"{error} — keeping {state.slot.current_id}.")
        bundle = state.slot.current
    last = bundle.num_layers - 1
    return (gr.update(value=bundle.backbone.tau, label=f"τ — sink threshold on φ (φ ≤ √D = "
                                                       f"{phi_bound(bundle.text_config.hidden_size):.1f})"),
            gr.update(value=2, maximum=last), gr.update(value=bundle.num_layers - 2, maximum=last),
            gr.update(value=state.slot.current_id), model_info(bundle),
            gr.update(value=0, maximum=last), gr.update(value=last, maximum=last),
            gr.update(value=default_capture(bundle),
                      label=f"Layers to capture (this model: 0 … {bundle.num_layers - 1})"))


def typed_model(model_id):
    """With --allow-any-model, an id typed into the picker loads when the field is left (a typed id selects no
    option); nothing happens when it is the loaded model or failed within RETRY_AFTER_S, as after a pick, whose
    own select event has just loaded or reported it."""
    failed_at = RECENT_FAILURES.get(model_id)
    if model_id == state.slot.current_id or (failed_at is not None and time.monotonic() - failed_at < RETRY_AFTER_S):
        return [gr.skip()] * MODEL_FIELDS
    return model_settings(model_id)


def page_settings(model_id, capture_text):
    """`model_settings` when a page opens, leaving a filled 'layers to capture' as the field holds it when the
    answer arrives (`capture_text` is its value when the page sent the event: anything typed since must survive a
    slow server); only an empty field gets the model's default."""
    *settings, capture = model_settings(model_id)
    if str(capture_text or "").strip():
        capture = gr.update(label=capture["label"])
    return (*settings, capture)


def examples() -> list[list[str]]:
    """Bundled example images with their prompts (`var_core.examples`), for gr.Examples."""
    return [[str(shipped_examples.path(name)), shipped_examples.prompt(name)] for name in shipped_examples.names()]
