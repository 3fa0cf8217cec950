"""What a causal probe did to the answer: its run compared with a baseline run on the same request.

Both runs record, at each decoding step, the 5 likeliest next tokens and their probabilities (`Trace.top_token_ids`,
`Trace.top_probs`, float32 softmax of the scores generate chose from). The answer token is the baseline's top-1 at
the first answer step; its probability under the probe is read from the probe's top 5 at that step. A token that
fell out of the probe's top 5 counts as probability 0 — a bound, not a measurement: its true probability is at most
the probe's 5th probability — and `in_probe_top` says so.
"""

from __future__ import annotations

from dataclasses import dataclass

from var_core.trace import Trace


@dataclass(frozen=True)
class AnswerChange:
    """The baseline's answer token at `step` and its probability in both runs; change = probe − baseline."""

    step: int
    token_id: int
    token: str | None
    baseline: float
    probe: float
    in_probe_top: bool  # False: the token left the probe's top 5 and `probe` is 0 (at most its 5th probability)

    @property
    def change(self) -> float:
        return self.probe - self.baseline


def _tops(trace: Trace, which: str, step: int):
    if trace.top_token_ids is None or trace.top_probs is None:
        raise ValueError(f"the {which} trace has no recorded top tokens (saved before they were recorded): rerun it")
    if not 0 <= step < len(trace.top_probs):
        raise ValueError(f"step={step!r} must be an integer in [0, {len(trace.top_probs) - 1}] (the {which} run "
                         f"decoded {len(trace.top_probs)} steps)")
    return trace.top_token_ids[step], trace.top_probs[step]


def answer_change(baseline_trace: Trace, probe_trace: Trace, step: int = 0) -> AnswerChange:
    """The baseline's top-1 token at decoding step `step` (0: the first answer token), its probability there and
    under the probe run (0 when it is not in the probe's top 5 at that step)."""
    if not isinstance(step, int) or isinstance(step, bool):
        raise ValueError(f"step={step!r} must be an integer")
    base_ids, base_probs = _tops(baseline_trace, "baseline", step)
    probe_ids, probe_probs = _tops(probe_trace, "probe", step)
    token_id = int(base_ids[0])
    hits = [i for i, t in enumerate(probe_ids) if int(t) == token_id]
    text = baseline_trace.top_tokens[step][0] if baseline_trace.top_tokens is not None else None
    return AnswerChange(step=step, token_id=token_id, token=text, baseline=float(base_probs[0]),
                        probe=float(probe_probs[hits[0]]) if hits else 0.0, in_probe_top=bool(hits))


def probability_change(baseline_trace: Trace, probe_trace: Trace, step: int = 0) -> float:
    """The change in the answer token's probability, probe − baseline, at the first answer step (`step`): the
    baseline's top-1 token, its probability under the probe run, or 0 if it fell out of the probe's top 5."""
    return answer_change(baseline_trace, probe_trace, step).change
