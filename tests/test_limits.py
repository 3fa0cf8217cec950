"""A request's `Deadline` (stop signal and wall-time limit) ends an explanation within one attention layer, in its
forward and in its backward pass, and leaves the model as it was."""

import pytest
import torch

from tests.signals import StopAfter
from var_core.config import VARConfig
from var_core.explain import explain
from var_core.hook import ATTENTION_NAME
from var_core.limits import Deadline, GenerationStopped, TimeLimitExceeded

PROMPT = "what colour is the square ?"
VAR = VARConfig(p=0.6, tau=1.0, rho=0.0, min_visual_mass=0.0, layers=(0, 1))


def test_an_unset_deadline_is_checked_at_every_layer_and_changes_nothing(tiny_bundle, noise_image):
    signal = StopAfter(10**9)
    free = explain(tiny_bundle, noise_image, PROMPT, VAR)
    watched = explain(tiny_bundle, noise_image, PROMPT, VAR, deadline=Deadline(seconds=600, stop=signal))
    layers = tiny_bundle.num_layers
    assert signal.calls == 3 * layers  # question forward, its backward, generic forward: once per layer each
    for method, values in free.maps.items():
        assert (values == watched.maps[method]).all(), method


@pytest.mark.parametrize("phase, looks_before", [("forward", lambda layers: 1),
                                                 ("backward", lambda layers: layers + 1),
                                                 ("generic prompt's forward", lambda layers: 2 * layers + 1)])
def test_a_stop_ends_the_explanation_within_one_layer(tiny_bundle, noise_image, phase, looks_before):
    signal = StopAfter(looks_before(tiny_bundle.num_layers))
    with pytest.raises(GenerationStopped, match="explanation|request"):
        explain(tiny_bundle, noise_image, PROMPT, VAR, deadline=Deadline(stop=signal))
    assert signal.calls == signal.checks + 1, phase  # nothing ran after the layer that saw the signal
    assert not tiny_bundle.lock.locked()
    assert tiny_bundle.model.config.get_text_config()._attn_implementation != ATTENTION_NAME
    again = explain(tiny_bundle, noise_image, PROMPT, VAR)  # the model is usable at once
    assert all(torch.isfinite(torch.as_tensor(values)).all() for values in again.maps.values())


def test_an_overdue_explanation_raises_time_limit_exceeded_with_its_limit(tiny_bundle, noise_image, monkeypatch):
    deadline = Deadline(seconds=5)
    now = [deadline.started + 6]
    monkeypatch.setattr("var_core.limits.time.monotonic", lambda: now[0])
    with pytest.raises(TimeLimitExceeded, match="5 s limit"):
        explain(tiny_bundle, noise_image, PROMPT, deadline=deadline)
