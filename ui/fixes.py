"""Compare fixes: the baseline and any of the registry's methods on the same image, prompt and model, their answers
side by side, what each did to the attention on visual sinks and on the image, its first answer token's
probability, and its map of the chosen layer and head beside the baseline's (API: `compare_fixes`)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import gradio as gr

from var_core.config import VARConfig
from var_core.gpu import gpu_task
from var_core.inputs import flag, number, shown
from var_core.interventions.registry import METHODS, build, run_method
from var_core.models.catalog import DEFAULT_MODEL_ID
from var_core.sessions import Held
from viz.diff import answer_diff
from viz.fixes import fix_row, fixes_figure, fixes_table

from ui import state
from ui.settings import DEFAULTS, MAX_NEW_TOKENS_UI, layers_to_capture, model_image, nearest_captured
from ui.state import LOG, Refused, RUN_TIME_LIMIT_S, keep, model_job, session_of, stored

MAX_PARAMS_CHARS = 4000
MEAN_HEADS = -1  # as ui.analyze's head picker


def method_choices() -> list[tuple[str, str]]:
    """(title, name) of every method in the registry but the baseline, which always runs."""
    return [(method.title, name) for name, method in METHODS.items() if name != "baseline"]


def default_params_text() -> str:
    """Every method's parameters at its defaults, as the JSON the parameter field starts with (one method a line)."""
    lines = [f"  {json.dumps(name)}: {json.dumps(method.defaults)}" for name, method in METHODS.items()
             if method.defaults]
    return "{\n" + ",\n".join(lines) + "\n}"


def checked_methods(methods) -> list[str]:
    """The methods a client asked for, as registry names in the registry's order, the baseline first and always."""
    if methods is None:
        methods = []
    if isinstance(methods, str):
        methods = [methods]
    if not isinstance(methods, (list, tuple)):
        raise ValueError(f"methods must be a list of method names, got {type(methods).__name__} {shown(methods)}")
    for name in methods:
        if not isinstance(name, str) or name not in METHODS:
            raise ValueError(f"methods: unknown method {shown(name)}; choose from {', '.join(METHODS)}")
    return ["baseline"] + [name for name in METHODS if name in methods and name != "baseline"]


def checked_params(params, methods: list[str]) -> dict[str, dict]:
    """The parameter field (JSON text, or a dict in-process: method → {parameter: value}; empty: every default)
    parsed, and each chosen method built once with it, so a bad value is refused before any model work with a
    message naming the method, the parameter and its range."""
    if params is None or (isinstance(params, str) and not params.strip()):
        params = {}
    if isinstance(params, str):
        if len(params) > MAX_PARAMS_CHARS:
            raise ValueError(f"method parameters: {len(params):,} characters; the limit is {MAX_PARAMS_CHARS}")
        try:
            params = json.loads(params)
        except json.JSONDecodeError as error:
            raise ValueError(f"method parameters are not valid JSON ({error.msg} at line {error.lineno}, column "
                             f"{error.colno}); write e.g. {{\"pai\": {{\"alpha\": 0.5}}}}") from None
    if not isinstance(params, dict):
        raise ValueError(f"method parameters must be a JSON object of method → {{parameter: value}}, got "
                         f"{type(params).__name__} {shown(params)}")
    chosen = {}
    for name, values in params.items():
        if name not in METHODS:
            raise ValueError(f"method parameters: unknown method {shown(name)}; choose from {', '.join(METHODS)}")
        title = METHODS[name].title
        if not isinstance(values, dict):
            raise ValueError(f"method parameters: {title}'s must be an object of parameter → value, got "
                             f"{type(values).__name__} {shown(values)}")
        for key, value in values.items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ValueError(f"{title}: {key} must be a number, got {type(value).__name__} {shown(value)}")
        if name in methods:
            try:
                build(name, **values)
            except (TypeError, ValueError) as error:
                raise ValueError(f"{title}: {str(error)[:240]}") from None
            chosen[name] = values
    return chosen


def fixes_duration(image, prompt, model_id, methods, *rest) -> float:
    """ZeroGPU's longest hold for one request: a run per method, and the model's load."""
    return len(methods) * RUN_TIME_LIMIT_S + 60


@gpu_task(duration=fixes_duration)
def run_fixes(image, prompt, model_id, methods: list[str], params: dict, square: bool, max_new_tokens, capture,
              progress, stop) -> dict:
    """The model part: every method's layers checked against the model first, then one run per method."""
    LOG.info("fixes started: model=%s methods=%s prompt=%r", model_id, ",".join(methods), str(prompt)[:80])
    progress(0.02, desc=f"Loading model {model_id}")
    bundle = state.slot.get(model_id)
    layers = layers_to_capture(bundle, capture)
    image = model_image(bundle, image, square)
    for name in methods:  # a start layer past this model's last is refused before the first run
        built = build(name, **params.get(name, {}))
        try:
            built.resolve_layers(bundle.num_layers) if isinstance(built, VARConfig) else (
                built is not None and built.check(bundle.num_layers))
        except ValueError as error:
            raise ValueError(f"{METHODS[name].title}: {error}") from None
    traces = {}
    for index, name in enumerate(methods):
        progress(0.05 + 0.9 * index / len(methods), desc=f"{METHODS[name].title} ({index + 1} of {len(methods)})")
        traces[name] = run_method(bundle, image, prompt, name, params.get(name), max_new_tokens=int(max_new_tokens),
                                  capture_layers=layers, max_time=RUN_TIME_LIMIT_S, stop=stop)
    LOG.info("fixes done: model=%s answers=%r", state.slot.current_id,
             {name: trace.answer[:40] for name, trace in traces.items()})
    return traces


def fixes_summary(traces: dict) -> dict:
    """What the API returns: the model, the prompt, and per method its answer, settings, probabilities, masses."""
    baseline = traces["baseline"]
    return {"model": baseline.settings.get("model"), "prompt": baseline.prompt,
            "methods": {name: {"title": METHODS[name].title, "settings": trace.settings.get("method"),
                               **fix_row(trace, baseline)} for name, trace in traces.items()}}


async def compare_fixes_request(image, prompt, model_id=DEFAULT_MODEL_ID, methods=None, method_params=None,
                                max_new_tokens=DEFAULTS["max_new_tokens"], capture_layers=None, pad_to_square=False,
                                request: gr.Request = None, progress=gr.Progress()):
    """Answer `prompt` about `image` with the baseline and each of `methods` (registry names, e.g. ["var", "pai"];
    None: every one), greedy decoding.

    method_params: JSON object method → {parameter: value}, each method's defaults for what it leaves out (empty:
    all defaults). Returns JSON: model, prompt, and per method (the baseline first) its answer, same_as_baseline,
    settings (the method and the parameters it ran with), first_token, first_token_probability, first_token_top5,
    baseline_first_token_probability, visual_sink_mass and visual_mass (share of the answer tokens' attention on
    visual sinks / the image, mean over captured layers and heads).
    """
    try:
        methods = checked_methods(list(METHODS) if methods is None else methods)
        params = checked_params(method_params, methods)
        max_new_tokens = number(max_new_tokens, "max new tokens", 1, MAX_NEW_TOKENS_UI, integer=True)
        square = flag(pad_to_square, "pad_to_square")
    except ValueError as error:
        raise Refused(str(error)) from None
    session = session_of(request)
    traces = await model_job(session, "comparison of fixes", run_fixes, image, prompt, model_id or DEFAULT_MODEL_ID,
                             methods, params, square, max_new_tokens, capture_layers, progress)
    return fixes_summary(traces), keep(session, "fixes", traces)


def settings_text(settings: dict | None) -> str:
    """'alpha = 0.2, start_layer = 2' of a run's trace.settings["method"]."""
    values = {key: value for key, value in (settings or {}).items() if key != "method"}
    return ", ".join(f"{key} = {value:g}" if isinstance(value, float) else f"{key} = {value}"
                     for key, value in values.items()) or "no parameters"


def render_fixes(held: Held | None, layer, head):
    """Every answer (differences from the baseline marked), the figure and table of every run at `layer` (the
    captured layer nearest to it) and `head`, the status line with each run's settings, the JSON export, and the
    head picker's choices. Nothing changes before the first comparison."""
    traces = stored(held)
    if traces is None:
        return [gr.skip()] * (len(METHODS) + 5)
    baseline = traces["baseline"]
    layer = nearest_captured(baseline.layers_captured, layer)
    head = None if head is None or int(head) == MEAN_HEADS or int(head) >= baseline.num_heads else int(head)
    answers = []
    for name in METHODS:
        if name not in traces:
            answers.append(gr.update(visible=False, value=None))
        elif name == "baseline":
            answers.append(gr.update(visible=True, value=[(baseline.answer, None)]))
        else:
            answers.append(gr.update(visible=True, value=answer_diff(baseline.answer, traces[name].answer)[1]))
    titles = {name: METHODS[name].title for name in traces}
    try:
        figure = fixes_figure(traces, titles, layer, head)
    except ValueError as error:
        raise Refused(str(error)) from None
    summary = fixes_summary(traces)
    table = fixes_table(summary["methods"], titles)
    changed = [titles[name] for name, row in summary["methods"].items() if not row["same_as_baseline"]]
    status = (f"**{baseline.settings.get('model')}** · layer {layer}, "
              f"{'mean over heads' if head is None else f'head {head}'} · "
              + ("answers differ from the baseline: " + ", ".join(changed) if changed else
                 "every method gave the baseline's answer") + "  \n"
              + "  \n".join(f"**{titles[name]}**: {settings_text(trace.settings.get('method'))}"
                            for name, trace in traces.items()))
    folder = Path(tempfile.mkdtemp(prefix="visual-sink-lens-fixes-"))
    export = folder / "compare_fixes.json"
    export.write_text(json.dumps({**summary, "layer": layer, "head": head}, indent=1, ensure_ascii=False))
    heads = [("mean over heads", MEAN_HEADS)] + [(f"head {h}", h) for h in range(baseline.num_heads)]
    return (*answers, figure, table, status, str(export),
            gr.update(choices=heads, value=MEAN_HEADS if head is None else head))
