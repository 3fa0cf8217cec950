"""Experiments: quick runs of the paper's experiments (admitted one at a time) and the committed full runs."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from var_core.eval.quick import NAMES as EXPERIMENTS, QUICK, load_full_results, run_quick
from var_core.eval.table import display_table
from var_core.inputs import number, shown
from var_core.limits import Deadline, GenerationStopped, TimeLimitExceeded
from var_core.server import Busy
from viz.figures import figure_image

from ui import state
from ui.settings import SAMPLES_RANGE
from ui.state import EXPERIMENT_TIME_LIMIT_S, LOG, Refused, session_of


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
    signal = state.running.start(session)
    deadline = Deadline(EXPERIMENT_TIME_LIMIT_S, signal)

    def step(done, total, message):
        deadline.check("the experiment")
        progress((done, total), desc=message)

    try:
        with state.long_jobs.admit(session):
            LOG.info("experiment started: %s, %d samples", name, samples)
            rows, figures = state.slot.call(run_quick, name, samples, bundle=state.slot.current, progress_callback=step)
            LOG.info("experiment done: %s", name)
    except (Busy, ValueError, TimeLimitExceeded) as error:
        raise Refused(str(error)) from None
    except GenerationStopped:
        raise Refused("Stopped: the experiment was cancelled before it was complete.") from None
    finally:
        state.running.finish(session, signal)
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
