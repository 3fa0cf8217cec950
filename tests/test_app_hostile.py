"""The live server against clients that skip the page: raw REST and raw `fn_index` calls through the queue, bodies
over the limits. Internal events reach only the caller's own session, long jobs are admitted one at a time, and
every refusal is a message, not a stall or a traceback."""

import json
import threading
import time

import httpx
import pytest

from tests.test_app_live import DEFAULT_MODEL, EXAMPLE, PROMPT, server, wait_for_log  # noqa: F401 — the fixture

MB = 2**20


def event_index(url: str, elem_id: str, trigger: str = "click") -> int:
    """The fn_index of the event that `trigger` on the component `elem_id` starts, from the page's config."""
    config = httpx.get(url + "config", timeout=10).json()
    component = next(c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == elem_id)
    return next(d["id"] for d in config["dependencies"] if [component, trigger] in d["targets"])


def queue_call(url: str, fn_index: int, data: list, session: str, timeout: float = 180) -> dict:
    """Join the queue as a raw client would and wait for the job's `process_completed` message."""
    joined = httpx.post(url + "gradio_api/queue/join", timeout=10,
                        json={"data": data, "fn_index": fn_index, "session_hash": session, "event_data": None})
    joined.raise_for_status()
    with httpx.stream("GET", url + "gradio_api/queue/data", params={"session_hash": session},
                      timeout=timeout) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:"):
                message = json.loads(line[5:])
                if message.get("msg") == "process_completed":
                    return message
    pytest.fail("the queue stream ended without completing the job")


def upload(url: str) -> dict:
    with open(EXAMPLE, "rb") as file:
        path = httpx.post(url + "gradio_api/upload", files={"files": file}, timeout=10).json()[0]
    return {"path": path, "meta": {"_type": "gradio.FileData"}}


def rest_call(url: str, api: str, body: str) -> tuple[str, str]:
    """POST raw JSON text to /gradio_api/call/<api>, then read the result stream: (event, data) of its last event."""
    posted = httpx.post(url + f"gradio_api/call/{api}", content=body, headers={"content-type": "application/json"},
                        timeout=10)
    posted.raise_for_status()
    event = data = None
    with httpx.stream("GET", url + f"gradio_api/call/{api}/{posted.json()['event_id']}", timeout=120) as stream:
        for line in stream.iter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data = line[5:].strip()
    return event, data


@pytest.mark.parametrize("literal, field_index, name", [("NaN", 3, "p"), ("Infinity", 11, "first map layer"),
                                                        ("-Infinity", 8, "last VAR layer"), ('"abc"', 4, "ρ"),
                                                        ("null", 6, "min visual mass")])
def test_raw_rest_nan_infinity_null_and_text_get_a_message(server, literal, field_index, name):
    url, _ = server
    fields = [json.dumps(upload(url)), json.dumps(PROMPT), json.dumps(DEFAULT_MODEL), "0.4", "0.5", "null", "0.2",
              "2", "null", "true", "null", "null", "null", "false"]  # the explain endpoint's 14 inputs
    fields[field_index] = literal
    event, data = rest_call(url, "explain", '{"data": [' + ", ".join(fields) + "]}")
    assert event == "error", (event, data)
    message = json.loads(data)["error"]
    assert name in message and len(message) <= 300, message


def test_raw_fn_index_experiments_run_one_at_a_time_and_stop_with_their_session(server):
    """An experiment started by a raw client holds the model; a second client's raw call is refused at once with
    "Busy"; the first session's Stop ends its experiment at its next run, and then the second one may run."""
    url, log_path = server
    experiment, stop = event_index(url, "run-experiment"), event_index(url, "stop")
    started_before = log_path.read_text().count("experiment started")
    holder: dict = {}
    thread = threading.Thread(target=lambda: holder.update(queue_call(url, experiment, ["pope", 80], "holder")))
    thread.start()
    wait_for_log(log_path, "experiment started", started_before + 1, timeout=60)
    asked = time.monotonic()
    refused = queue_call(url, experiment, ["pope", 4], "intruder")
    assert time.monotonic() - asked < 10  # refused at once, not queued behind minutes of model time
    assert not refused["success"] and "Busy: another experiment" in refused["output"]["error"]
    httpx.post(url + "gradio_api/run/predict", json={"data": [], "fn_index": stop, "session_hash": "holder"},
               timeout=10)
    thread.join(timeout=30)
    assert not thread.is_alive() and not holder["success"]
    assert log_path.read_text().count("experiment done") == 0
    done = queue_call(url, experiment, ["contribution", 4], "intruder")
    table = done["output"]["data"][0] if done["success"] else {}
    assert table.get("visible") and table["value"]["data"], done  # the quick run's table, shown


def test_internal_events_see_only_the_calling_sessions_results(server):
    """A raw call of the downloads event from a session that has analysed nothing gets a message, never another
    session's figures or Traces (those live behind the session's own state)."""
    from gradio_client import Client, handle_file

    url, _ = server
    Client(url, verbose=False).predict(handle_file(str(EXAMPLE)), PROMPT, max_new_tokens=2, api_name="/analyze")
    downloads = event_index(url, "prepare-downloads")
    answer = queue_call(url, downloads, [None, 5, -1, "answer", "VAR", False, None, None], "stranger")
    assert not answer["success"] and "Run an analysis first" in answer["output"]["error"]


def test_request_bodies_over_the_limits_are_refused_with_413(server):
    url, _ = server
    huge_json = httpx.post(url + "gradio_api/queue/join", content=b'{"data": ["' + b"x" * (2 * MB) + b'"]}',
                           headers={"content-type": "application/json"}, timeout=30)
    assert huge_json.status_code == 413 and "1 MiB" in huge_json.json()["detail"]
    huge_upload = httpx.post(url + "gradio_api/upload", files={"files": ("big.png", b"\0" * (22 * MB))}, timeout=60)
    assert huge_upload.status_code == 413
    assert httpx.get(url, timeout=5).status_code == 200


def test_ordinary_input_errors_leave_one_log_line_not_a_traceback(server):
    """Every refusal above (bad numbers, busy experiments, a session without results, bodies over the limit) is a
    message for the client; the server log keeps no traceback of them."""
    url, log_path = server
    no_image = ["null", '"Hi?"', json.dumps(DEFAULT_MODEL), "0.4", "0.5", "null", "0.2", "2", "null", "null", "true",
                '""', "false"]  # the analyze endpoint's 13 inputs, without an image
    event, data = rest_call(url, "analyze", '{"data": [' + ", ".join(no_image) + "]}")
    assert event == "error" and "No image" in json.loads(data)["error"]
    log = log_path.read_text()
    assert "Traceback" not in log, log[log.find("Traceback") - 300:][:1500]
