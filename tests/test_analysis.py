"""`analyze`: baseline and VAR runs side by side, and the API summary built from them."""

from var_core.analysis import analyze
from var_core.config import VARConfig


def test_analysis_runs_both_and_summarises(tiny_bundle, noise_image):
    steps = []
    result = analyze(tiny_bundle, noise_image, "what colour is the square ?", VARConfig(p=0.6, tau=1.2),
                     max_new_tokens=4, on_step=steps.append)
    assert steps == ["baseline", "VAR"]
    assert not result.baseline.var_applied and result.var.var_applied
    assert result.baseline.settings["tau"] == result.var.settings["tau"] == 1.2
    summary = result.summary()
    assert summary["baseline_answer"] == result.baseline.answer and summary["var_answer"] == result.var.answer
    assert len(summary["sinks"]) == tiny_bundle.num_layers
    assert all({"layer", "head", "r"} <= set(head) for head in summary["heads"])
