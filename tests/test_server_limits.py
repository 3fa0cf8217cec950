"""The rules that protect a shared server (`var_core.server`): long-job admission, request-body limits and bounded
log lines, without a server."""

import logging
import threading

import pytest
from fastapi import FastAPI, Request
from starlette.middleware import Middleware
from starlette.responses import JSONResponse
from starlette.testclient import TestClient

from var_core.server import BodyLimit, BoundedLog, Busy, LongJobs, release_free_memory


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_one_long_job_at_a_time_the_second_is_refused_at_once_with_a_message():
    jobs = LongJobs(per_session=5, window_s=3600, clock=Clock())
    with jobs.admit("first"):
        with pytest.raises(Busy, match="another experiment has been running for 0 s") as refused:
            with jobs.admit("second"):
                pytest.fail("a second job ran beside the first")
        assert len(str(refused.value)) <= 300
    with jobs.admit("second"):  # free again once the first ended
        pass


def test_a_job_that_fails_frees_the_server():
    jobs = LongJobs(per_session=5, window_s=3600)
    with pytest.raises(RuntimeError, match="boom"):
        with jobs.admit("session"):
            raise RuntimeError("boom")
    with jobs.admit("other"):
        pass


def test_a_session_starts_at_most_its_limit_per_window_and_is_told_when_it_may_again():
    clock = Clock()
    jobs = LongJobs(per_session=2, window_s=3600, clock=clock)
    for _ in range(2):
        with jobs.admit("greedy"):
            clock.now += 60
    with pytest.raises(Busy, match=r"started 2 experiments in the last 60 min, the limit; the next can start in "
                                   r"58 min 0 s"):
        with jobs.admit("greedy"):
            pass
    with jobs.admit("someone else"):  # the limit is the session's, not everyone's
        pass
    clock.now += 3600 - 120 + 1  # the first start has left the window
    with jobs.admit("greedy"):
        pass
    assert set(jobs._starts) <= {"greedy", "someone else"}


def test_sessions_whose_starts_left_the_window_are_forgotten():
    clock = Clock()
    jobs = LongJobs(per_session=2, window_s=60, clock=clock)
    for session in range(1000):
        with jobs.admit(f"session {session}"):
            pass
    clock.now += 61
    with jobs.admit("late"):
        pass
    assert list(jobs._starts) == ["late"]


def test_concurrent_admissions_let_exactly_one_in():
    jobs = LongJobs(per_session=100, window_s=3600)
    inside, refused, barrier = [], [], threading.Barrier(8)
    release = threading.Event()

    def attempt(index):
        barrier.wait()
        try:
            with jobs.admit(f"session {index}"):
                inside.append(index)
                release.wait(5)
        except Busy:
            refused.append(index)

    threads = [threading.Thread(target=attempt, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    while len(inside) + len(refused) < 8 and not (inside and len(refused) == 7):
        threading.Event().wait(0.01)
    release.set()
    for thread in threads:
        thread.join()
    assert len(inside) == 1 and len(refused) == 7


def limited_app(limit: int) -> TestClient:
    async def echo(request: Request):
        body = await request.body()
        return JSONResponse({"bytes": len(body)})

    app = FastAPI(middleware=[Middleware(BodyLimit, default_bytes=limit, routes={"/upload": 4 * limit})])
    app.add_api_route("/call", echo, methods=["POST"])
    app.add_api_route("/gradio_api/upload", echo, methods=["POST"])

    @app.post("/json")
    async def parsed(payload: dict):
        return {"keys": len(payload)}

    return TestClient(app)


def test_a_body_over_the_limit_is_refused_from_its_content_length():
    client = limited_app(1000)
    assert client.post("/call", content=b"x" * 1000).json() == {"bytes": 1000}
    refused = client.post("/call", content=b"x" * 1001)
    assert refused.status_code == 413
    assert refused.json()["detail"] == "The request body is larger than this server accepts (0.000953674 MiB)."


def test_uploads_have_their_own_limit():
    client = limited_app(1000)
    assert client.post("/gradio_api/upload", content=b"x" * 3000).json() == {"bytes": 3000}
    assert client.post("/gradio_api/upload", content=b"x" * 4001).status_code == 413


@pytest.mark.parametrize("route", ["/call", "/json"])
def test_a_streamed_body_without_a_length_is_cut_off_at_the_limit(route):
    client = limited_app(1000)

    def chunks():  # a generator: sent chunked, with no Content-Length to refuse it by
        for _ in range(100):
            yield b"{" + b" " * 98 + b"}"

    refused = client.post(route, content=chunks(), headers={"content-type": "application/json"})
    assert "content-length" not in refused.request.headers
    assert refused.status_code == 413 and "larger than this server accepts" in refused.json()["detail"]


def test_a_malformed_content_length_is_refused():
    client = limited_app(1000)
    assert client.post("/call", content=b"x", headers={"content-length": "lots"}).status_code in (400, 413)


def test_long_log_messages_and_tracebacks_are_cut(caplog):
    logger = logging.getLogger("test_server_limits")
    bounded = BoundedLog(chars=100)
    caplog.handler.addFilter(bounded)
    try:
        logger.warning("prompt=%r", "why " * 10**5)
        try:
            raise ValueError("layer " * 10**5)
        except ValueError:
            logger.exception("request failed")
    finally:
        caplog.handler.removeFilter(bounded)
    message, failure = caplog.records
    assert len(message.getMessage()) < 150 and message.getMessage().endswith("characters cut]")
    assert failure.exc_info is None and len(failure.exc_text) < 150 and "characters cut" in failure.exc_text
    assert len(caplog.text) < 1000


def test_freed_heap_memory_goes_back_to_the_os():
    """Many small blocks freed out of order stay in glibc's heap (RSS does not fall) until malloc_trim hands them
    back: what a server does after many sessions' requests."""
    import psutil

    process = psutil.Process()
    blocks = [bytearray(4096) for _ in range(60_000)]  # ≈ 240 MiB in small blocks, below mmap's threshold
    keep = blocks[::64]
    del blocks
    before = process.memory_info().rss
    assert release_free_memory()
    after = process.memory_info().rss
    assert before - after > 100 * 2**20, (before / 2**20, after / 2**20)
    del keep
