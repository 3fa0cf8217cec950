"""Compare fixes: the baseline, any of the registry's methods and the two causal probes on the same image, prompt
and model: their answers side by side, what each did to the attention on visual sinks and on the image, to the
baseline answer token's probability, its map of the chosen layer and head beside the baseline's, and optionally
each run's "Where did it look?" maps (API: `compare`)."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr

from var_core.config import VARConfig
from var_core.explain import explain
from var_core.gpu import gpu_task
from var_core.inputs import flag, number, shown
from var_core.interventions.probes import PROBES, build_probe, check_probe
from var_core.interventions.registry import METHODS, build, method_settings, run_method
from var_core.limits import Deadline
from var_core.run import generate
from var_core.models.catalog import DEFAULT_MODEL_ID
from var_core.sessions import Held
from viz.diff import answer_diff
from viz.explain import compare_methods
from viz.fixes import fix_row, fixes_figure, fixes_table

from ui import state
from ui.settings import DEFAULTS, MAX_NEW_TOKENS_UI, layers_to_capture, model_image, nearest_captured
from ui.state import EXPLAIN_TIME_LIMIT_S, LOG, Refused, RUN_TIME_LIMIT_S, keep, model_job, session_of, stored

MAX_PARAMS_CHARS = 4000
MEAN_HEADS = -1  # as ui.analyze's head picker
RUNS = ["baseline", *[name for name in METHODS if name != "baseline"], *PROBES]  # every run's name, in shown order


@dataclass
class Fixes:
    """One comparison: each run's Trace (method or probe name → Trace, the baseline first), each run's explanation
    when asked for, and the probes that could not be built for this request, with why."""

    traces: dict
    explanations: dict = field(default_factory=dict)
    not_run: dict = field(default_factory=dict)


def title_of(name: str) -> str:
    """The shown name of a method or probe."""
    return METHODS[name].title if name in METHODS else PROBES[name].title


def method_choices() -> list[tuple[str, str]]:
    """(title, name) of every method in the registry but the baseline, which always runs, then the probes."""
    return [(title_of(name), name) for name in RUNS[1:]]


def default_choices() -> list[str]:
    """What the tab starts with ticked: every method, no probe (a probe answers a different question)."""
    return [name for name in RUNS[1:] if name in METHODS]


def defaults_of(name: str) -> dict:
    return METHODS[name].defaults if name in METHODS else PROBES[name].defaults


def default_params_text() -> str:
    """Every method's and probe's parameters at their defaults, as the JSON the parameter field starts with (one a
    line)."""
    lines = [f"  {json.dumps(name)}: {json.dumps(defaults_of(name))}" for name in RUNS if defaults_of(name)]
    return "{\n" + ",\n".join(lines) + "\n}"


def checked_methods(methods) -> list[str]:
    """The methods and probes a client asked for, as names in the shown order, the baseline first and always."""
    if methods is None:
        methods = []
    if isinstance(methods, str):
        methods = [methods]
    if not isinstance(methods, (list, tuple)):
        raise ValueError(f"methods must be a list of method names, got {type(methods).__name__} {shown(methods)}")
    for name in methods:
        if not isinstance(name, str) or name not in RUNS:
            raise ValueError(f"methods: unknown method {shown(name)}; choose from {', '.join(RUNS)}")
    return ["baseline"] + [name for name in RUNS[1:] if name in methods]


def _plain(value) -> bool:
    """A parameter value the field may hold: a number, a short word, None, or a list of [layer, head] pairs."""
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return True
    if isinstance(value, str):
        return len(value) <= 40
    return isinstance(value, list) and all(isinstance(pair, list) and len(pair) == 2 and all(
        isinstance(item, int) and not isinstance(item, bool) for item in pair) for pair in value)


def checked_params(params, methods: list[str]) -> dict[str, dict]:
    """The parameter field (JSON text, or a dict in-process: method → {parameter: value}; empty: every default)
    parsed, and each chosen method built once with it (each probe checked), so a bad value is refused before any
    model work with a message naming the method, the parameter and its range."""
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
        if name not in RUNS:
            raise ValueError(f"method parameters: unknown method {shown(name)}; choose from {', '.join(RUNS)}")
        title = title_of(name)
        if not isinstance(values, dict):
            raise ValueError(f"method parameters: {title}'s must be an object of parameter → value, got "
                             f"{type(values).__name__} {shown(values)}")
        for key, value in values.items():
            if not _plain(value):
                raise ValueError(f"{title}: {key} must be a number, a word, null or a list of [layer, head] pairs, "
                                 f"got {type(value).__name__} {shown(value)}")
        if name in methods:
            try:
                check_probe(name, **values) if name in PROBES else build(name, **values)
            except (TypeError, ValueError) as error:
                raise ValueError(f"{title}: {str(error)[:240]}") from None
            chosen[name] = values
    return chosen


def fixes_duration(image, prompt, model_id, methods, params, square, max_new_tokens, capture, explain_each,
                   *rest) -> float:
    """ZeroGPU's longest hold for one request: a run per method (and its explanation), and the model's load."""
    return len(methods) * RUN_TIME_LIMIT_S + (EXPLAIN_TIME_LIMIT_S if explain_each else 0) + 60


def _checked_against(bundle, methods: list[str], params: dict) -> None:
    """Every method's layers checked against the model before the first run (a start layer past its last)."""
    for name in methods:
        if name in PROBES:
            continue
        built = build(name, **params.get(name, {}))
        try:
            built.resolve_layers(bundle.num_layers) if isinstance(built, VARConfig) else (
                built is not None and built.check(bundle.num_layers))
        except ValueError as error:
            raise ValueError(f"{METHODS[name].title}: {error}") from None


def _under(built) -> dict:
    """explain's arguments for a run of method `built` (a VARConfig, an Intervention or None)."""
    return {"config": built} if isinstance(built, VARConfig) else {"intervention": built}


@gpu_task(duration=fixes_duration)
def run_fixes(image, prompt, model_id, methods: list[str], params: dict, square: bool, max_new_tokens, capture,
              explain_each: bool, progress, stop) -> Fixes:
    """The model part: every method's layers checked against the model first, one run per method, then the probes
    (built from the baseline run), then, when asked, each run's explanation."""
    LOG.info("fixes started: model=%s methods=%s prompt=%r", model_id, ",".join(methods), str(prompt)[:80])
    progress(0.02, desc=f"Loading model {model_id}")
    bundle = state.slot.get(model_id)
    layers = layers_to_capture(bundle, capture)
    image = model_image(bundle, image, square)
    _checked_against(bundle, methods, params)
    options = dict(max_new_tokens=int(max_new_tokens), capture_layers=layers, max_time=RUN_TIME_LIMIT_S, stop=stop)
    fixes, built = Fixes({}), {}
    share = 0.9 if explain_each else 0.95
    for index, name in enumerate(methods):
        progress(0.05 + share * index / len(methods) * (0.5 if explain_each else 1),
                 desc=f"{title_of(name)} ({index + 1} of {len(methods)})")
        if name in METHODS:
            built[name] = build(name, **params.get(name, {}))
            fixes.traces[name] = run_method(bundle, image, prompt, name, params.get(name), **options)
            continue
        try:
            built[name] = build_probe(name, fixes.traces["baseline"], **params.get(name, {}))
        except ValueError as error:  # e.g. nothing to mask in this request: the others still show
            fixes.not_run[name] = str(error)
            continue
        fixes.traces[name] = trace = generate(bundle, image, prompt, intervention=built[name], **options)
        trace.settings["method"] = method_settings(built[name])
    if explain_each:
        progress(0.5, desc="Where did it look? Each run's maps")
        deadline = Deadline(EXPLAIN_TIME_LIMIT_S, stop)  # all explanations together
        fixes.explanations = {name: explain(bundle, image, prompt, answer=trace.answer.strip() or None,
                                            deadline=deadline, **_under(built[name]))
                              for name, trace in fixes.traces.items()}
    LOG.info("fixes done: model=%s answers=%r", state.slot.current_id,
             {name: trace.answer[:40] for name, trace in fixes.traces.items()})
    return fixes


def fixes_summary(fixes: Fixes) -> dict:
    """What the API returns: the model, the prompt, per run its answer, settings, probabilities and masses (and its
    explanation's answer token and each map's share on visual sinks, when asked for), and the probes not run."""
    baseline = fixes.traces["baseline"]
    methods = {}
    for name, trace in fixes.traces.items():
        methods[name] = {"title": title_of(name), "settings": trace.settings.get("method"), **fix_row(trace, baseline)}
        if name in fixes.explanations:
            explanation = fixes.explanations[name]
            methods[name]["where_did_it_look"] = {"answer_token": explanation.answer_token,
                                                  "share_on_visual_sinks": explanation.mass_on_sinks()}
    return {"model": baseline.settings.get("model"), "prompt": baseline.prompt, "methods": methods,
            "not_run": dict(fixes.not_run)}


async def compare_fixes_request(image, prompt, model_id=DEFAULT_MODEL_ID, methods=None, method_params=None,
                                max_new_tokens=DEFAULTS["max_new_tokens"], capture_layers=None, pad_to_square=False,
                                explain_each=False, request: gr.Request = None, progress=gr.Progress()):
    """Answer `prompt` about `image` with the baseline and each of `methods` (method names, e.g. ["var", "pai"],
    and the probes "mask" / "knockout"; None: every method, no probe), greedy decoding.

    method_params: JSON object method → {parameter: value}, each method's defaults for what it leaves out (empty:
    all defaults). explain_each: also each run's "Where did it look?" maps of its first answer token. Returns JSON:
    model, prompt, not_run (probe → why it could not be built for this request), and per run (the baseline first)
    its answer, same_as_baseline, settings (the method and the parameters it ran with), first_token,
    first_token_probability, first_token_top5, baseline_first_token, baseline_first_token_probability (None: out of
    this run's top 5), answer_token_change (that probability's change from the baseline's; 0 counted when it left
    the top 5), visual_sink_mass and visual_mass (share of the answer tokens' attention on visual sinks / the image,
    mean over captured layers and heads), and with explain_each where_did_it_look (answer token, each map's share
    on visual sinks).
    """
    try:
        methods = checked_methods(default_choices() if methods is None else methods)
        params = checked_params(method_params, methods)
        max_new_tokens = number(max_new_tokens, "max new tokens", 1, MAX_NEW_TOKENS_UI, integer=True)
        square = flag(pad_to_square, "pad_to_square")
        explain_each = flag(explain_each, "explain_each")
    except ValueError as error:
        raise Refused(str(error)) from None
    session = session_of(request)
    fixes = await model_job(session, "comparison of fixes", run_fixes, image, prompt, model_id or DEFAULT_MODEL_ID,
                            methods, params, square, max_new_tokens, capture_layers, explain_each, progress)
    return fixes_summary(fixes), keep(session, "fixes", fixes)


def settings_text(settings: dict | None) -> str:
    """'alpha = 0.2, start_layer = 2' of a run's trace.settings["method"] (a probe's positions left out)."""
    values = {key: value for key, value in (settings or {}).items() if key not in ("method", "positions")}
    return ", ".join(f"{key} = {value:g}" if isinstance(value, float) else f"{key} = {value}"
                     for key, value in values.items()) or "no parameters"


def where_did_it_look(fixes: Fixes, prompt: str):
    """The run × map grid of each run's explanation of its own first answer token, its sink patches framed (None
    when explanations were not asked for)."""
    if not fixes.explanations:
        return None
    runs = {title_of(name): explanation for name, explanation in fixes.explanations.items()}
    first = next(iter(runs.values()))
    tokens = ", ".join(f"{run} {explanation.answer_token.strip()!r}" for run, explanation in runs.items())
    return compare_methods(first.image, {run: explanation.maps for run, explanation in runs.items()},
                           f"Where did each look for its first answer token? ({tokens}) — {str(prompt)[:60]}",
                           sinks={run: explanation.sink_patches for run, explanation in runs.items()})


def render_fixes(held: Held | None, layer, head):
    """Every answer (differences from the baseline marked), the figure and table of every run at `layer` (the
    captured layer nearest to it) and `head`, the run × map explanation grid, the status line with each run's
    settings, the JSON export, and the head picker's choices. Nothing changes before the first comparison."""
    fixes: Fixes | None = stored(held)
    if fixes is None:
        return [gr.skip()] * (len(RUNS) + 6)
    traces = fixes.traces
    baseline = traces["baseline"]
    layer = nearest_captured(baseline.layers_captured, layer)
    head = None if head is None or int(head) == MEAN_HEADS or int(head) >= baseline.num_heads else int(head)
    answers = []
    for name in RUNS:
        if name not in traces:
            answers.append(gr.update(visible=False, value=None))
        elif name == "baseline":
            answers.append(gr.update(visible=True, value=[(baseline.answer, None)]))
        else:
            answers.append(gr.update(visible=True, value=answer_diff(baseline.answer, traces[name].answer)[1]))
    titles = {name: title_of(name) for name in traces}
    try:
        figure = fixes_figure(traces, titles, layer, head)
    except ValueError as error:
        raise Refused(str(error)) from None
    summary = fixes_summary(fixes)
    table = fixes_table(summary["methods"], titles)
    changed = [titles[name] for name, row in summary["methods"].items() if not row["same_as_baseline"]]
    status = (f"**{baseline.settings.get('model')}** · layer {layer}, "
              f"{'mean over heads' if head is None else f'head {head}'} · "
              + ("answers differ from the baseline: " + ", ".join(changed) if changed else
                 "every run gave the baseline's answer") + "  \n"
              + "  \n".join(f"**{titles[name]}**: {settings_text(trace.settings.get('method'))}"
                            for name, trace in traces.items())
              + "".join(f"  \n**{title_of(name)}** did not run: {why}" for name, why in fixes.not_run.items()))
    folder = Path(tempfile.mkdtemp(prefix="visual-sink-lens-fixes-"))
    export = folder / "compare_fixes.json"
    export.write_text(json.dumps({**summary, "layer": layer, "head": head}, indent=1, ensure_ascii=False))
    heads = [("mean over heads", MEAN_HEADS)] + [(f"head {h}", h) for h in range(baseline.num_heads)]
    looked = where_did_it_look(fixes, baseline.prompt)
    return (*answers, figure, table, gr.update(visible=looked is not None, value=looked), status, str(export),
            gr.update(choices=heads, value=MEAN_HEADS if head is None else head))
