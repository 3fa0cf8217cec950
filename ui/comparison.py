"""Compare prompts: two questions about one image, their sinks and attention side by side."""

from __future__ import annotations

import gradio as gr
import numpy as np

from var_core.analysis import Analysis
from var_core.compare import compare_prompts, shared_sinks
from var_core.gpu import gpu_task
from var_core.inputs import flag, number, text_value
from var_core.models.catalog import DEFAULT_MODEL_ID
from var_core.run import MAX_PROMPT_CHARS
from var_core.sessions import Held
from viz.prompts import overlap_by_layer, overlap_text, prompt_comparison

from ui import state
from ui.settings import (MAX_NEW_TOKENS_UI, checked_settings, layers_to_capture, model_image, nearest_captured,
                         var_config)
from ui.state import GPU_DURATION_S, LOG, Refused, RUN_TIME_LIMIT_S, keep, model_job, session_of, stored


@gpu_task(duration=2 * GPU_DURATION_S)
def run_comparison(image, prompts: tuple[str, str], model_id, settings: dict, square: bool, max_new_tokens, capture,
                   stop) -> tuple[Analysis, Analysis]:
    """The model part of a comparison: both prompts answered without and with VAR on the same image."""
    LOG.info("comparison started: model=%s prompts=%r", model_id, [str(prompt)[:80] for prompt in prompts])
    bundle = state.slot.get(model_id)
    config = var_config(bundle, **settings)
    layers = layers_to_capture(bundle, capture)
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
    layer = nearest_captured(captured, layer)
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
