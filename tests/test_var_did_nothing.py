"""When VAR had nothing to act on, the Trace, the API summary and the status line say so, computed from the run."""

import pytest

from var_core.analysis import analyze
from var_core.config import VARConfig
from var_core.run import generate

PROMPT = "what colour is the square ?"
HIGH_TAU = 7.9  # just under √64: no visual token of the tiny model reaches it


@pytest.fixture(scope="module")
def idle(tiny_bundle, noise_image):
    """An analysis whose τ leaves no visual sink in the VAR layers."""
    return analyze(tiny_bundle, noise_image, PROMPT, VARConfig(tau=HIGH_TAU), max_new_tokens=3)


def test_a_var_run_without_visual_sinks_in_its_layers_says_var_did_nothing(idle):
    var = idle.var
    assert var.var_layer_sinks == 0 and idle.changes().rows_touched == 0  # the claim holds: nothing moved
    assert len(var.warnings) == 1
    assert var.warnings[0].startswith(f"VAR did nothing: no visual sink at τ = {HIGH_TAU:g} in its layer 2 ")
    assert "lower τ below" in var.warnings[0] and idle.baseline.warnings == []


def test_the_api_summary_and_the_status_line_carry_the_warning(idle):
    from ui import analyze as ui_analyze

    summary = idle.summary()
    assert summary["warnings"] == idle.var.warnings and summary["settings"]["tau"] == HIGH_TAU
    assert f"**{idle.var.warnings[0]}**" in ui_analyze._status(idle)


def test_a_var_run_that_has_visual_sinks_gives_no_warning(tiny_bundle, noise_image):
    result = analyze(tiny_bundle, noise_image, PROMPT, VARConfig(tau=1.0), max_new_tokens=3)
    assert result.var.var_layer_sinks > 0 and result.changes().rows_touched > 0
    assert result.var.warnings == [] and result.summary()["warnings"] == []


def test_sinks_without_an_image_centric_head_are_reported_from_the_unchanged_rows(tiny_bundle, noise_image):
    result = analyze(tiny_bundle, noise_image, PROMPT, VARConfig(tau=1.0, min_visual_mass=1.0), max_new_tokens=3)
    assert result.var.var_layer_sinks > 0 and result.changes().rows_touched == 0
    assert result.warnings() == ["VAR did nothing: there are visual sinks at τ = 1 in its layer 2 but it changed no "
                                 "attention row: no head was image-centric (r ≥ ρ = 0.5 and visual mass ≥ 1); "
                                 "lower ρ or the minimum visual mass"]


def test_var_in_no_layer_says_so(tiny_bundle, noise_image):
    trace = generate(tiny_bundle, noise_image, PROMPT, VARConfig(tau=1.0, layers=()), max_new_tokens=1)
    assert trace.warnings == ["VAR did nothing: it acts in no layer of this 4-layer model; choose VAR layers"]
