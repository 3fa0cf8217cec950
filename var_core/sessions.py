"""Every live session's results (Analyses, Explanations) in one process-wide store with a cap on their bytes.

The app's `gr.State` keeps only a small `Held` ticket; the results themselves live here, so the server knows how many
bytes all sessions hold together and can bound them: storing a result that would take the total past the cap first
drops the least recently used results, and a ticket whose results were dropped raises `Dropped` (the app turns it
into a message asking to run again) instead of failing somewhere inside a view.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import threading
import time
from collections import OrderedDict
from typing import Any, Callable

import numpy as np

LOG = logging.getLogger("visual_sink_lens.sessions")
MB = 2 ** 20


@dataclasses.dataclass(frozen=True)
class Held:
    """A session's ticket for one stored result (what the app keeps in gr.State): whose, which kind, which one."""

    session: str
    kind: str
    serial: int


class Dropped(LookupError):
    """The result a ticket names is gone: dropped to free memory, expired, or replaced by a newer one."""


@dataclasses.dataclass
class _Entry:
    """One stored result, its size and when it was last used (for expiry)."""

    serial: int
    value: Any
    nbytes: int
    used: float


def result_bytes(value: Any) -> int:
    """Bytes of every numpy array inside `value`, walking dataclasses, dicts, lists and tuples: what a Trace, an
    Analysis or an Explanation holds (strings and numbers are negligible beside the arrays)."""
    if isinstance(value, np.ndarray):
        return value.nbytes
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return sum(result_bytes(getattr(value, field.name)) for field in dataclasses.fields(value))
    if isinstance(value, dict):
        return sum(result_bytes(item) for item in value.values())
    if isinstance(value, (list, tuple)):
        return sum(result_bytes(item) for item in value)
    return 0


class SessionResults:
    """Each session's latest result of each kind, at most `cap_bytes` in total; results unused for `ttl_s` expire.

    Thread-safe: Gradio runs handlers of different sessions on different threads.
    """

    def __init__(self, cap_bytes: int, ttl_s: float, clock: Callable[[], float] = time.monotonic):
        if cap_bytes <= 0:
            raise ValueError(f"the session memory cap must be positive, got {cap_bytes} bytes")
        self.cap_bytes, self.ttl_s, self._clock = int(cap_bytes), ttl_s, clock
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()  # least recently used first
        self._serials = itertools.count(1)
        self._lock = threading.Lock()

    @property
    def total_bytes(self) -> int:
        """Bytes of all stored results together."""
        with self._lock:
            return sum(entry.nbytes for entry in self._entries.values())

    def keep(self, session: str, kind: str, value: Any) -> Held:
        """Store `value` as `session`'s `kind` result (replacing its previous one) and return its ticket; expired and
        then least recently used results are dropped until it fits. ValueError when it alone exceeds the cap."""
        nbytes = result_bytes(value)
        if nbytes > self.cap_bytes:
            raise ValueError(f"These results take {nbytes / MB:.0f} MB, more than the {self.cap_bytes / MB:.0f} MB "
                             "the server keeps for all sessions together: capture fewer layers or ask for a shorter "
                             "answer (or raise VAR_SESSION_MEMORY_MB).")
        with self._lock:
            self._entries.pop((session, kind), None)
            now = self._clock()
            for key in [key for key, entry in self._entries.items() if now - entry.used > self.ttl_s]:
                del self._entries[key]
            while sum(entry.nbytes for entry in self._entries.values()) + nbytes > self.cap_bytes:
                (owner, dropped_kind), entry = self._entries.popitem(last=False)
                LOG.info("dropped the %s of session %s (%.1f MB) to stay under %.0f MB", dropped_kind, owner,
                         entry.nbytes / MB, self.cap_bytes / MB)
            serial = next(self._serials)
            self._entries[(session, kind)] = _Entry(serial, value, nbytes, now)
        return Held(session, kind, serial)

    def get(self, held: Held) -> Any:
        """The result `held` names, marked as just used; `Dropped` when it is no longer stored."""
        with self._lock:
            entry = self._entries.get((held.session, held.kind))
            if entry is None or entry.serial != held.serial:
                raise Dropped(f"the {held.kind} of session {held.session} is no longer stored")
            entry.used = self._clock()
            self._entries.move_to_end((held.session, held.kind))
            return entry.value

    def release(self, held: Held | None) -> None:
        """Forget the result `held` names (its session's state expired or was closed); None or a stale ticket is a
        no-op. The app passes this as gr.State's delete_callback."""
        if held is None:
            return
        with self._lock:
            entry = self._entries.get((held.session, held.kind))
            if entry is not None and entry.serial == held.serial:
                del self._entries[(held.session, held.kind)]
