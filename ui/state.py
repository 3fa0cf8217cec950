"""The app's shared state and request plumbing: the model slot, every session's stored results, the running
jobs' stop signals, long-job admission, and how a handler runs on the model thread and reports a refusal."""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid

import gradio as gr

from var_core.deploy import session_memory_mb
from var_core.gpu import on_zero_gpu
from var_core.limits import GenerationStopped, TimeLimitExceeded
from var_core.models.catalog import ModelLoadError
from var_core.models.slot import ModelSlot
from var_core.server import LongJobs
from var_core.sessions import Dropped, Held, MB, SessionResults

LOG = logging.getLogger("visual_sink_lens")
RUN_TIME_LIMIT_S = 60  # decoding of each of the two runs stops after this long
EXPLAIN_TIME_LIMIT_S = 2 * RUN_TIME_LIMIT_S  # both explanations together (three passes each), else refused
GPU_DURATION_S = 2 * RUN_TIME_LIMIT_S + 60  # ZeroGPU: longest GPU hold per request (two runs + load, rendering)
EXPERIMENT_TIME_LIMIT_S = 300  # a quick experiment (about a minute on a CPU) is stopped after this long
EXPERIMENTS_PER_SESSION, EXPERIMENT_WINDOW_S = 6, 3600  # and one session starts at most 6 an hour, one at a time
SESSION_TTL_S = 3600  # a session's Traces are dropped an hour after its last use
AGAIN = {"analysis": "Analyze", "explanation": "the Explain button", "comparison": "Compare",
         "fixes": "Compare fixes"}  # what re-creates them

slot = ModelSlot()
store = SessionResults(int(session_memory_mb() * MB), SESSION_TTL_S)  # every session's results, under one cap
long_jobs = LongJobs(EXPERIMENTS_PER_SESSION, EXPERIMENT_WINDOW_S)  # experiments: one at a time, a few per session


class Refused(gr.Error):
    """A message about the user's input or a limit they met: shown on the page and in the API answer, not printed to
    the log as a traceback (the log keeps one line per request)."""

    def __init__(self, message: str):
        super().__init__(message, print_exception=False)


class RunningRequests:
    """The stop signal of each session's running job (analysis, explanation, comparison, experiment), so Stop, a
    cancelled API job or a closed tab ends it at its next token, layer or run instead of letting an abandoned
    request hold the model for up to its time limit."""

    def __init__(self):
        self._signals: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def start(self, session: str) -> threading.Event:
        with self._lock:
            signal = self._signals[session] = threading.Event()
        return signal

    def finish(self, session: str, signal: threading.Event) -> None:
        with self._lock:
            if self._signals.get(session) is signal:
                del self._signals[session]

    def stop(self, session: str) -> bool:
        """Set the session's stop signal; False when it has no job running."""
        with self._lock:
            signal = self._signals.get(session)
        if signal is not None:
            signal.set()
        return signal is not None


running = RunningRequests()


def session_of(request: gr.Request | None) -> str:
    """The Gradio session of a request; a call without one (in-process) gets a fresh id, so its results are its own."""
    return getattr(request, "session_hash", None) or f"call-{uuid.uuid4().hex}"


def stored(held: Held | None):
    """The results `held` names (None when there are none yet); a clear message when they were dropped."""
    if held is None:
        return None
    try:
        return store.get(held)
    except Dropped:
        raise Refused(f"This session's results were dropped to free memory (the server keeps at most "
                       f"{store.cap_bytes / MB:.0f} MB of results); press {AGAIN[held.kind]} again.") from None


async def model_job(session: str, what: str, work, *args):
    """`work(*args, stop)` on the model thread (see var_core.models.slot) as `session`'s running job: Stop, a
    cancelled API job or a closed tab sets `stop` (a cancelled request returns at once; its run ends at the next
    token or layer); the errors a user can cause become messages. ZeroGPU runs `work` in a worker process, which
    this process's signal cannot reach, so there it ends at its time limit."""
    signal = running.start(session)
    try:
        return await asyncio.wrap_future(slot.submit(work, *args, None if on_zero_gpu() else signal))
    except asyncio.CancelledError:
        signal.set()
        raise
    except (ValueError, ModelLoadError, TimeLimitExceeded) as error:
        raise Refused(str(error)) from None
    except GenerationStopped:
        raise Refused(f"Stopped: the {what} was cancelled before it was complete.") from None
    finally:
        running.finish(session, signal)


def keep(session: str, kind: str, value) -> Held:
    """`store.keep` with its refusal (results larger than the whole cap) as a message."""
    try:
        return store.keep(session, kind, value)
    except ValueError as error:
        raise Refused(str(error)) from None


def stop_session(request: gr.Request) -> None:
    """Stop button and tab close: end this session's running analysis at its next token (an explanation at its next
    layer, an experiment at its next run)."""
    if running.stop(request.session_hash):
        LOG.info("stopped the running job of session %s", request.session_hash)
