"""Where did it look?: the four explanation maps of the first answer token, baseline and VAR."""

from __future__ import annotations

import tempfile
from pathlib import Path

import gradio as gr
import pandas as pd

from var_core.explain import Explanation, explain, save_explanations
from var_core.gpu import gpu_task
from var_core.inputs import flag, number, text_value
from var_core.limits import Deadline
from var_core.models.catalog import DEFAULT_MODEL_ID
from var_core.sessions import Held
from viz.explain import compare_methods

from ui import state
from ui.settings import DEFAULTS, MAX_ANSWER_CHARS, checked_settings, model_image, var_config
from ui.state import EXPLAIN_TIME_LIMIT_S, GPU_DURATION_S, LOG, Refused, keep, model_job, session_of, stored


@gpu_task(duration=GPU_DURATION_S)
def run_explanation(image, prompt, model_id, settings: dict, square: bool, answer, map_layers, progress,
                    stop) -> dict[str, Explanation]:
    """The model part of an explanation: the four maps of the first answer token (the model's own, or `answer`'s),
    without and with VAR; raw and relative attention averaged over `map_layers` (first, last; None = every layer).
    Both runs together must end within EXPLAIN_TIME_LIMIT_S, and `stop` ends them within one layer."""
    LOG.info("explanation started: model=%s prompt=%r", model_id, str(prompt)[:80])
    progress(0.02, desc=f"Loading model {model_id}")
    bundle = state.slot.get(model_id)
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
