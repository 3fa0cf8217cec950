"""A full analysis: the same image and prompt answered without and with VAR, as two Traces."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable

from var_core.config import VARConfig
from var_core.images import prepare_image
from var_core.models.bundle import ModelBundle
from var_core.run import generate
from var_core.trace import Trace


@dataclass
class Analysis:
    """Baseline and VAR runs of one request. Visual-token sinks are identical in both (VAR only changes
    the rows after the image), so `sinks` is reported once."""

    baseline: Trace
    var: Trace

    def _repr_html_(self) -> str:
        """Jupyter: both answers, the VAR run's facts, attention before / after VAR (drawn by `viz.notebook`)."""
        from viz.notebook import analysis_html

        return analysis_html(self)

    def summary(self) -> dict:
        """The API's answer: both answers, per-layer visual sinks, selected heads with r, settings."""
        var_summary = self.var.summary()
        return {
            "baseline_answer": self.baseline.answer,
            "var_answer": self.var.answer,
            "answers_differ": self.baseline.answer != self.var.answer,
            "sinks": var_summary["sinks"],
            "heads": var_summary["heads"],
            "settings": var_summary["settings"],
        }


def analyze(bundle: ModelBundle, image, prompt: str, config: VARConfig, max_new_tokens: int = 32,
            on_step: Callable[[str], None] | None = None, max_time: float | None = None,
            stop: threading.Event | None = None, capture_layers=None) -> Analysis:
    """Run the baseline then VAR (greedy, same settings otherwise); `on_step` hears each step's name;
    `max_time` bounds each run's decoding in seconds; setting `stop` ends either run (`GenerationStopped`);
    `capture_layers`: the layers both Traces keep attention for (None = all; see `var_core.run.generate`)."""
    image = prepare_image(image)
    notify = on_step or (lambda step: None)
    notify("baseline")
    baseline = generate(bundle, image, prompt, config=None, max_new_tokens=max_new_tokens, measure=config,
                        max_time=max_time, stop=stop, capture_layers=capture_layers)
    notify("VAR")
    with_var = generate(bundle, image, prompt, config=config, max_new_tokens=max_new_tokens, max_time=max_time,
                        stop=stop, capture_layers=capture_layers)
    return Analysis(baseline=baseline, var=with_var)
