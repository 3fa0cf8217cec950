"""The benchmarks' guard against timing a no-op: `changed_rows` is 0 when VAR has nothing to act on."""

from bench.common import changed_rows
from var_core.config import VARConfig
from var_core.run import generate

PROMPT = "what colour is the square ?"


def test_changed_rows_is_zero_when_var_has_no_sink_to_act_on_and_positive_when_it_acts(tiny_bundle, noise_image):
    idle = generate(tiny_bundle, noise_image, PROMPT, config=VARConfig(tau=7.9), max_new_tokens=3)
    assert not idle.visual_sinks.any() and changed_rows(idle) == 0
    acting = generate(tiny_bundle, noise_image, PROMPT, config=VARConfig(tau=1.0), max_new_tokens=3)
    assert changed_rows(acting) > 0
