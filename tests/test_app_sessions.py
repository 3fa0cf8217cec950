"""All live sessions' results under one memory cap: the store's accounting and eviction, and what the app shows a
session whose results were dropped."""

import asyncio
import dataclasses

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from ui import analyze as ui_analyze
from ui import explanations as ui_explanations
from ui import layout as ui_layout
from ui import settings as ui_settings
from ui import state as ui_state
from tests.synthetic_trace import synthetic_trace
from var_core.analysis import Analysis
from var_core.sessions import Dropped, SessionResults, result_bytes
from var_core.trace import ARRAY_FIELDS

EXAMPLE = ui_settings.EXAMPLES_DIR / "demo_three_shapes.png"
PROMPT = "What colour is the square?"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def analysis(seed: int = 0) -> Analysis:
    return Analysis(baseline=synthetic_trace(var=False, seed=seed), var=synthetic_trace(seed=seed))


def test_the_bytes_of_a_result_are_those_of_its_arrays():
    trace = synthetic_trace()
    arrays = sum(getattr(trace, name).nbytes for name in ARRAY_FIELDS if getattr(trace, name) is not None)
    assert result_bytes(trace) == arrays > 0
    assert result_bytes(analysis()) == result_bytes(analysis().baseline) + arrays
    assert result_bytes({"a": [np.zeros(10)], "b": (np.zeros(3, np.float16), "text", 4)}) == 86


def test_three_sessions_over_the_cap_drop_the_oldest():
    size = result_bytes(analysis())
    store = SessionResults(cap_bytes=int(2.5 * size), ttl_s=3600)
    first, second, third = (store.keep(session, "analysis", analysis()) for session in ("a", "b", "c"))
    with pytest.raises(Dropped):
        store.get(first)
    assert store.get(second).var.answer and store.get(third).var.answer
    assert store.total_bytes == 2 * size <= store.cap_bytes


def test_using_a_result_keeps_it_longer_than_an_unused_newer_one():
    size = result_bytes(analysis())
    store = SessionResults(cap_bytes=int(2.5 * size), ttl_s=3600)
    first, second = store.keep("a", "analysis", analysis()), store.keep("b", "analysis", analysis())
    store.get(first)
    store.keep("c", "analysis", analysis())
    assert store.get(first) is not None
    with pytest.raises(Dropped):
        store.get(second)


def test_a_new_result_replaces_the_sessions_previous_one_without_evicting_others():
    size = result_bytes(analysis())
    store = SessionResults(cap_bytes=int(2.5 * size), ttl_s=3600)
    other = store.keep("b", "analysis", analysis())
    old = store.keep("a", "analysis", analysis())
    new = store.keep("a", "analysis", analysis(seed=1))
    assert store.total_bytes == 2 * size and store.get(other) is not None and store.get(new) is not None
    with pytest.raises(Dropped):
        store.get(old)  # a stale ticket never reads the newer result


def test_a_result_larger_than_the_cap_is_refused_and_drops_nothing():
    store = SessionResults(cap_bytes=result_bytes(analysis()) - 1, ttl_s=3600)
    kept = store.keep("a", "explanation", {"map": np.zeros(4)})
    with pytest.raises(ValueError, match="more than the 0 MB the server keeps for all sessions together"):
        store.keep("b", "analysis", analysis())
    assert store.get(kept) is not None


def test_released_and_expired_results_free_their_bytes():
    clock = Clock()
    store = SessionResults(cap_bytes=10 ** 9, ttl_s=60, clock=clock)
    held = store.keep("a", "analysis", analysis())
    store.release(None)
    store.release(dataclasses.replace(held, serial=held.serial + 1))  # a stale ticket frees nothing
    assert store.total_bytes > 0
    store.release(held)
    assert store.total_bytes == 0
    store.keep("a", "analysis", analysis())
    clock.now = 61
    fresh = store.keep("b", "analysis", analysis())
    assert store.total_bytes == result_bytes(store.get(fresh))


def test_a_cap_must_be_positive():
    with pytest.raises(ValueError, match="must be positive"):
        SessionResults(cap_bytes=0, ttl_s=60)


@pytest.fixture
def small_store(monkeypatch):
    """The app's store with room for two analyses of the default model at two new tokens, not three."""
    first = asyncio.run(ui_analyze.analyze_request(Image.open(EXAMPLE), PROMPT, max_new_tokens=2))[1]
    size = result_bytes(ui_state.store.get(first))
    store = SessionResults(cap_bytes=int(2.5 * size), ttl_s=ui_state.SESSION_TTL_S)
    monkeypatch.setattr(ui_state, "store", store)
    return store


def analyze_as(session: str):
    request = type("Request", (), {"session_hash": session})()
    return asyncio.run(ui_analyze.analyze_request(Image.open(EXAMPLE), PROMPT, max_new_tokens=2, request=request))[1]


def test_an_evicted_sessions_views_say_so_and_the_others_still_render(small_store):
    oldest, middle, newest = (analyze_as(session) for session in ("oldest", "middle", "newest"))
    assert small_store.total_bytes <= small_store.cap_bytes
    cap_mb = f"{small_store.cap_bytes / 2 ** 20:.0f} MB"
    message = (f"This session's results were dropped to free memory (the server keeps at most {cap_mb} of results); "
               "press Analyze again.")
    selection = (5, ui_analyze.MEAN_HEADS, "answer", "VAR", False)
    for view in (lambda: ui_analyze.render_all(oldest, *selection), lambda: ui_analyze.render_selection(oldest, *selection),
                 lambda: ui_analyze.render_reverse(oldest, 3, 5, ui_analyze.MEAN_HEADS, "VAR"),
                 lambda: ui_analyze.make_downloads(oldest, *selection)):
        with pytest.raises(gr.Error) as error:
            view()
        assert error.value.message == message
    assert len(ui_analyze.render_all(newest, *selection)) == 26
    assert len(ui_analyze.render_selection(middle, *selection)) == len(ui_analyze.SELECTION_VIEWS)


def test_a_dropped_explanation_asks_for_the_explain_button(small_store):
    explained = asyncio.run(ui_explanations.explain_request(Image.open(EXAMPLE), PROMPT,
                                                request=type("Request", (), {"session_hash": "x"})()))[1]
    small_store.release(explained)
    with pytest.raises(gr.Error, match="press the Explain button again"):
        ui_explanations.render_explanation(explained, PROMPT)


def test_the_pages_states_release_their_results_when_gradio_deletes_them():
    """One State per tab that keeps a result: analysis, explanation, prompt comparison, fix comparison."""
    states = [block for block in ui_layout.build_demo().blocks.values() if isinstance(block, gr.State)]
    assert len(states) == 4 and all(state.delete_callback == ui_state.store.release for state in states)
