"""What protects a shared server from one client: admission of long jobs, request-body limits and bounded log lines.

Pure Python and ASGI (no Gradio), so the rules are testable without a server: `LongJobs` admits one long job (an
experiment: minutes on the single model thread) at a time and a few per session per window; `BodyLimit` answers
413 to a request body over its route's limit before the app parses it; `BoundedLog` cuts log messages;
`trim_memory_every` hands freed heap back to the OS.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from contextlib import contextmanager

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse

LOG_CHARS = 2000  # a log message longer than this is cut (a request must not write megabytes to the log)


class Busy(RuntimeError):
    """A long job was refused: another one is running, or this session reached its limit; the message says when
    to try again."""


class LongJobs:
    """One long job at a time on the server, and at most `per_session` started per `window_s` by one session: no
    client can queue minutes of model time ahead of everyone else (a refused job costs nothing)."""

    def __init__(self, per_session: int, window_s: float, clock: Callable[[], float] = time.monotonic):
        self.per_session, self.window_s, self._clock = per_session, window_s, clock
        self._lock = threading.Lock()
        self._running: float | None = None  # when the running job started
        self._starts: dict[str, deque[float]] = {}  # session → start times inside the window

    def _forget_old(self, now: float) -> None:
        for session in list(self._starts):
            starts = self._starts[session]
            while starts and now - starts[0] >= self.window_s:
                starts.popleft()
            if not starts:
                del self._starts[session]

    @contextmanager
    def admit(self, session: str, what: str = "experiment"):
        """Run the body as `session`'s long job, or raise `Busy` at once with a message saying why and when."""
        with self._lock:
            now = self._clock()
            self._forget_old(now)
            if self._running is not None:
                raise Busy(f"Busy: another {what} has been running for {now - self._running:.0f} s and holds the "
                           f"model; one runs at a time. Try again when it has finished.")
            starts = self._starts.setdefault(session, deque())
            if len(starts) >= self.per_session:
                wait = self.window_s - (now - starts[0])
                raise Busy(f"This session has started {len(starts)} {what}s in the last {self.window_s / 60:.0f} "
                           f"min, the limit; the next can start in {wait / 60:.0f} min {wait % 60:.0f} s.")
            starts.append(now)
            self._running = now
        try:
            yield
        finally:
            with self._lock:
                self._running = None


class BodyLimit:
    """ASGI middleware: a request whose body is over its route's limit gets 413 and a message naming the limit,
    from its Content-Length before anything is read, or as soon as a streamed body passes it."""

    def __init__(self, app, default_bytes: int, routes: dict[str, int]):
        self.app, self.default_bytes, self.routes = app, default_bytes, routes  # routes: path suffix → limit

    def limit(self, path: str) -> int:
        return next((limit for suffix, limit in self.routes.items() if path.endswith(suffix)), self.default_bytes)

    @staticmethod
    def message(limit: int) -> str:
        return f"The request body is larger than this server accepts ({limit / 2**20:g} MiB)."

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.limit(scope["path"])
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            return await JSONResponse({"detail": self.message(limit)}, status_code=413)(scope, receive, send)
        received = 0

        async def counted():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:  # FastAPI passes an HTTPException from here on as the response
                raise HTTPException(status_code=413, detail=self.message(limit))
            return message

        await self.app(scope, counted, send)


class BoundedLog(logging.Filter):
    """Cuts every log message and traceback to `chars` characters (arguments formatted first), saying how much was
    left out."""

    def __init__(self, chars: int = LOG_CHARS):
        super().__init__()
        self.chars = chars

    def cut(self, text: str) -> str:
        return text if len(text) <= self.chars else f"{text[:self.chars]} … [{len(text) - self.chars} characters cut]"

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = self.cut(record.getMessage()), None
        if record.exc_info:  # a traceback repeats the exception's message, which may be as long
            record.exc_text, record.exc_info = self.cut(logging.Formatter().formatException(record.exc_info)), None
        return True


@functools.cache
def _libc():
    """The C library, or None: found once (`find_library` runs `ldconfig`, too slow to repeat every few seconds)."""
    name = ctypes.util.find_library("c")
    return ctypes.CDLL(name) if name else None


def release_free_memory() -> bool:
    """Hand the C heap's free pages back to the OS (glibc's `malloc_trim`); False where there is no glibc. Without it
    a server's freed memory stays in the process: under 64 concurrent clients RSS grew ≈ 15 MiB per new session, and
    malloc_trim gave back all but ≈ 2.7 MiB of it (the session's stored results and Gradio's session state)."""
    libc = _libc()
    if libc is None or not hasattr(libc, "malloc_trim"):
        return False
    libc.malloc_trim(0)
    return True


def trim_memory_every(seconds: float) -> threading.Thread:
    """A daemon thread that calls `release_free_memory` every `seconds` (well under a millisecond each time)."""
    def trim():
        while release_free_memory():
            time.sleep(seconds)

    thread = threading.Thread(target=trim, name="release-free-memory", daemon=True)
    thread.start()
    return thread
