"""What ends a request early: a stop signal (Stop pressed, tab closed, job cancelled) and a wall-time deadline.

The hook checks a run's `Deadline` at every attention layer, forward and backward, so a forward or backward pass
that cannot finish in time (an explanation, a masked run) ends within one layer instead of holding the model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

MAX_NEW_TOKENS_LIMIT = 512  # the longest answer a run decodes (the app allows fewer)


class GenerationStopped(RuntimeError):
    """A run's stop signal was set (the user pressed Stop or left): its answer is incomplete and not returned."""


class TimeLimitExceeded(RuntimeError):
    """A request ran past its wall-time limit; its partial result is dropped."""


@dataclass(frozen=True)
class Deadline:
    """`seconds` (None: no limit) from when it was made, and an optional stop signal (anything with `is_set()`)."""

    seconds: float | None = None
    stop: object | None = None
    started: float = field(default_factory=time.monotonic)

    def check(self, what: str = "the request") -> None:
        """Raise `GenerationStopped` once the signal is set, `TimeLimitExceeded` once the time is up."""
        if self.stop is not None and self.stop.is_set():
            raise GenerationStopped(f"{what} was stopped before it was complete")
        if self.seconds is not None and time.monotonic() - self.started > self.seconds:
            raise TimeLimitExceeded(f"{what} took longer than its {self.seconds:g} s limit and was stopped")

