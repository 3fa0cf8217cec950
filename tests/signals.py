"""A stop signal for tests: set after a number of looks, counting them (how often a run checks it)."""


class StopAfter:
    """A stop signal that turns set after `checks` is_set() calls, counting the calls (decoding steps)."""

    def __init__(self, checks: int):
        self.checks, self.calls = checks, 0

    def is_set(self) -> bool:
        self.calls += 1
        return self.calls > self.checks
