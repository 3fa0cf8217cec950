"""Shared benchmark helpers: machine description, interleaved medians, result files."""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results"


def machine() -> dict:
    """What the numbers were measured on."""
    return {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "loadavg_at_start": os.getloadavg()}


def peak_rss_mib() -> float:
    """This process's peak resident memory. Linux's VmHWM, not ru_maxrss: ru_maxrss survives exec, so a child of
    a big parent (bench.run_all) would report the parent's size."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:  # not Linux: ru_maxrss is the best there is (kB on Linux, bytes on macOS)
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if platform.system() == "Darwin" else 1024)
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1]) / 1024


def interleaved_medians(cases: dict, reps: int = 5, warmup: int = 1) -> dict[str, dict]:
    """Time each zero-argument callable `reps` times, cases interleaved round-robin so machine noise hits all
    alike; returns name → {median_s, runs_s}."""
    for _ in range(warmup):
        for run in cases.values():
            run()
    runs = {name: [] for name in cases}
    for _ in range(reps):
        for name, run in cases.items():
            start = time.perf_counter()
            run()
            runs[name].append(time.perf_counter() - start)
    return {name: {"median_s": statistics.median(times), "runs_s": times} for name, times in runs.items()}


def write(name: str, payload: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=1))
    return path
