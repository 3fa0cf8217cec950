"""64 concurrent clients on a live server, mixed endpoints: analyze and explain through gradio_client, quick
experiments through raw `fn_index` queue calls (as the page makes them).

Run: `python -m bench.bench_load`. Each client asks one of 4 (image, prompt) pairs whose answers were first taken
one at a time, so a client that gets another's answer is counted as mixed. Two rounds of 64 new sessions: the
first brings the server to its working size (each session's results stay, up to the store's cap; the C heap and
Python's pools reach their high-water mark); the second must add ≤ 10 % to that (a leak grows with every round).
Targets (issue "Reliability v3"): every job finishes or is refused with a clear message (experiments beyond the one
running are refused "Busy"), 0 mixed answers, RSS growth over the second round ≤ +10 %, and a fresh request
answered within 5 s afterwards; p50 / p95 latency reported, and the first round's growth over an 8-client warm-up.
The server keeps at most 64 MB of session results (VAR_SESSION_MEMORY_MB=64).
"""

from __future__ import annotations

import json
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import psutil

from bench.common import ROOT, live_server, write

CLIENTS, NEW_TOKENS, SESSION_MEMORY_MB = 64, 8, 64
EXAMPLES = ROOT / "assets" / "examples"
PAIRS = [("demo_three_shapes.png", "What colour is the square?"), ("scene_08.png", "How many shapes are there?"),
         ("scene_14.png", "Is there a red circle in the image?"), ("sketch_stars.png", "Describe the image.")]
KINDS = ["analyze"] * 5 + ["explain"] * 2 + ["experiment"]  # client i does KINDS[i % 8]
CLEAR_REFUSALS = ("Busy", "Queue is full", "limit")


def experiment_index(url: str) -> int:
    """fn_index of the Experiments tab's button, from the page's config."""
    config = httpx.get(url + "config", timeout=10).json()
    button = next(c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == "run-experiment")
    return next(d["id"] for d in config["dependencies"] if [button, "click"] in d["targets"])


def run_experiment(url: str, fn_index: int, session: str) -> tuple[str, str]:
    """A quick experiment joined through the queue as the page does: ("ok", rows) or ("refused"/"error", message)."""
    joined = httpx.post(url + "gradio_api/queue/join", timeout=30,
                        json={"data": ["contribution", 4], "fn_index": fn_index, "session_hash": session})
    if joined.status_code != 200:
        return "refused", joined.json().get("detail", joined.text)[:200]
    with httpx.stream("GET", url + "gradio_api/queue/data", params={"session_hash": session}, timeout=900) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:"):
                message = json.loads(line[5:])
                if message.get("msg") == "process_completed":
                    if message["success"]:
                        table = message["output"]["data"][0]  # the quick run's table, as a visible update
                        return "ok", f"{len(table.get('value', table)['data'])} rows"
                    return "refused", str(message["output"].get("error"))[:200]
    return "error", "the stream ended without a result"


def answer_of(kind: str, result) -> tuple:
    if kind == "analyze":
        return result["baseline_answer"], result["var_answer"]
    return tuple(run["answer_token"] for run in result["runs"].values())


def ask(url: str, kind: str, pair, fn_index: int, session: str):
    """One client's request: (kind, pair, outcome, detail, seconds)."""
    from gradio_client import Client, handle_file

    start = time.perf_counter()
    try:
        if kind == "experiment":
            outcome, detail = run_experiment(url, fn_index, session)
        else:
            image = handle_file(str(EXAMPLES / pair[0]))
            client = Client(url, verbose=False, httpx_kwargs={"timeout": 300})  # httpx's 5 s is short for a busy queue
            result = (client.predict(image, pair[1], max_new_tokens=NEW_TOKENS, api_name="/analyze")
                      if kind == "analyze" else client.predict(image, pair[1], api_name="/explain"))
            outcome, detail = "ok", answer_of(kind, result)
    except Exception as error:  # noqa: BLE001 — every failure is recorded with its message
        message = str(error)[:200]
        outcome, detail = ("refused" if any(word in message for word in CLEAR_REFUSALS) else "error"), message
    return kind, pair, outcome, detail, time.perf_counter() - start


def wait_until_idle(server: psutil.Process, quiet_s: int = 3, timeout_s: float = 900) -> None:
    """Until the server has used under 5 % of a core for `quiet_s` seconds in a row: every job it took has ended."""
    deadline, quiet = time.monotonic() + timeout_s, 0
    while quiet < quiet_s and time.monotonic() < deadline:
        quiet = quiet + 1 if server.cpu_percent(interval=1) < 5 else 0


def mixed_round(url: str, fn_index: int, clients: int, tag: str) -> list[tuple]:
    with ThreadPoolExecutor(max_workers=clients) as pool:
        return list(pool.map(lambda i: ask(url, KINDS[i % len(KINDS)], PAIRS[i % len(PAIRS)], fn_index,
                                           f"{tag}-{i}"), range(clients)))


def main() -> dict:
    with live_server({"VAR_SESSION_MEMORY_MB": str(SESSION_MEMORY_MB)}) as (url, process):
        server = psutil.Process(process.pid)
        fn_index = experiment_index(url)
        expected = {(kind, pair): ask(url, kind, pair, fn_index, "expected")[3]
                    for kind in ("analyze", "explain") for pair in PAIRS}
        warmup = mixed_round(url, fn_index, 8, "warmup")
        wait_until_idle(server)
        rss = [server.memory_info().rss / 2**20]
        for round_ in ("first", "second"):
            start = time.perf_counter()
            results = mixed_round(url, fn_index, CLIENTS, round_)
            wall = time.perf_counter() - start
            wait_until_idle(server)
            rss.append(server.memory_info().rss / 2**20)
        fresh = ask(url, "analyze", PAIRS[0], fn_index, "fresh")
    mixed = [r for r in results if r[2] == "ok" and r[0] != "experiment" and r[3] != expected[(r[0], r[1])]]
    unclear = [r for r in results if r[2] == "error"]
    counts = {kind: {outcome: sum(1 for r in results if r[0] == kind and r[2] == outcome)
                     for outcome in ("ok", "refused", "error")} for kind in dict.fromkeys(KINDS)}
    latencies = sorted(r[4] for r in results if r[2] == "ok")
    p50, p95 = statistics.median(latencies), latencies[int(0.95 * (len(latencies) - 1))]
    growth, first_growth = rss[2] / rss[1] - 1, rss[1] / rss[0] - 1
    experiments_run = counts["experiment"]["ok"]
    checks = [
        {"figure": f"{CLIENTS} concurrent clients (analyze / explain / experiment): finished or clearly refused",
         "target": "all", "measured": f"{len(results) - len(unclear)} of {len(results)} "
                                      f"({', '.join(f'{k}: {v}' for k, v in counts.items())})",
         "pass": not unclear and all(counts[kind]["ok"] for kind in ("analyze", "explain")) and experiments_run >= 1},
        {"figure": f"{CLIENTS} concurrent clients: answers mixed between clients", "target": "0",
         "measured": str(len(mixed)), "pass": not mixed},
        {"figure": f"server RSS over a second round of {CLIENTS} concurrent new sessions", "target": "≤ +10 %",
         "measured": f"{100 * growth:+.1f} % ({rss[1]:.0f} → {rss[2]:.0f} MiB; the first round: "
                     f"{100 * first_growth:+.1f} % from {rss[0]:.0f} MiB)", "pass": growth <= 0.10},
        {"figure": "a fresh request after the load", "target": "≤ 5 s",
         "measured": f"{fresh[4]:.1f} s ({fresh[2]})", "pass": fresh[2] == "ok" and fresh[4] <= 5},
        {"figure": f"{CLIENTS} concurrent clients (second round): latency of finished jobs p50 / p95",
         "target": "reported",
         "measured": f"{p50:.0f} / {p95:.0f} s (all {CLIENTS} in {wall:.0f} s)", "pass": True},
    ]
    write("load", {"clients": CLIENTS, "new_tokens": NEW_TOKENS, "session_memory_mb": SESSION_MEMORY_MB,
                   "counts": counts, "rss_mib": {"warm": rss[0], "first round": rss[1], "second round": rss[2]}, "latency_s": {"p50": p50, "p95": p95},
                   "wall_s": wall, "warmup_outcomes": [r[2] for r in warmup],
                   "refusals": sorted({r[3] for r in results if r[2] == "refused"}),
                   "errors": [r[3] for r in unclear], "checks": checks})
    for check in checks:
        print(check)
    return {"checks": checks}


if __name__ == "__main__":
    main()
