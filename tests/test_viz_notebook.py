"""Notebook displays: Trace, Analysis and Explanation show a summary and their key picture inline."""

import base64
import io
import re

import numpy as np
from IPython.core.interactiveshell import InteractiveShell
from PIL import Image

from tests.synthetic_trace import synthetic_trace
from var_core.analysis import Analysis
from var_core.explain import Explanation
from viz.compare import before_after
from viz.evidence import phi_by_layer
from viz.figures import figure_image
from viz.heatmap import attention_heatmap
from viz.notebook import sink_layer
from viz.ranking import head_ranking


def inline_images(markup: str) -> list[np.ndarray]:
    return [np.asarray(Image.open(io.BytesIO(base64.b64decode(data))))
            for data in re.findall(r'src="data:image/png;base64,([^"]+)"', markup)]


def test_a_trace_shows_its_answer_facts_and_the_heatmap_of_its_sinkiest_layer():
    trace = synthetic_trace(layers=4, grid=(3, 5), sink=(1, 3))
    trace.answer = "the square is <red>"
    markup = trace._repr_html_()
    assert "the square is &lt;red&gt;" in markup  # escaped
    assert "visual sinks in layers 1–3" in markup and "VAR (p = 0.5)" in markup
    layer = sink_layer(trace)
    assert trace.visual_sinks[layer].sum() == trace.visual_sinks.sum(1).max()
    (picture,) = inline_images(markup)
    assert np.array_equal(picture, np.asarray(attention_heatmap(trace, layer, None, "answer", short_side=224)))


def test_an_analysis_shows_both_answers_and_before_after_var():
    baseline, var = synthetic_trace(var=False), synthetic_trace()
    baseline.answer, var.answer = "a red square", "a blue square"
    markup = Analysis(baseline=baseline, var=var)._repr_html_()
    assert "a red square" in markup and "a blue square" in markup
    (picture,) = inline_images(markup)
    expected = before_after(var, sink_layer(var), None, "answer", short_side=200)
    assert np.array_equal(picture, np.asarray(expected))


def test_an_explanation_shows_its_maps_and_their_share_on_sinks():
    sinks = np.zeros((3, 5), bool)
    sinks[0, 0] = True
    maps = {method: np.full((3, 5), 1 / 15, np.float32) for method in ("raw attention", "relevancy")}
    explanation = Explanation("red", True, np.zeros((30, 50, 3), np.uint8), maps, sinks, [0, 1])
    markup = explanation._repr_html_()
    assert "raw attention 7%" in markup and "(VAR)" in markup and len(inline_images(markup)) == 1


def test_chart_views_display_as_png_in_ipython_without_matplotlib_inline():
    shell = InteractiveShell.instance()  # Jupyter's kernel: the shell exists before any figure is made
    trace = synthetic_trace(layers=4, grid=(3, 5), sink=(1, 3))
    for figure in (phi_by_layer(trace), head_ranking(trace, "answer")):
        data, _ = shell.display_formatter.format(figure)
        assert "image/png" in data, data["text/plain"]
        assert Image.open(io.BytesIO(data["image/png"])).size == figure_image(figure).size


def test_experiment_result_plots_display_as_png_in_ipython_too():
    from var_core.eval.plots import metric_bars

    shell = InteractiveShell.instance()
    figure = metric_bars([{"condition": "baseline", "accuracy": 0.9, "f1": 0.8}], "pope", metrics=("accuracy", "f1"))
    data, _ = shell.display_formatter.format(figure)
    assert "image/png" in data, data["text/plain"]


def test_the_apps_plot_component_still_takes_the_views_figures():
    """gr.Plot recognises a matplotlib figure by its class's module: a Figure subclass defined here was sent to
    its altair/plotly branch and every Analyze failed to render."""
    import gradio as gr

    trace = synthetic_trace(layers=4, grid=(3, 5), sink=(1, 3))
    assert gr.Plot().postprocess(phi_by_layer(trace)).type == "matplotlib"
