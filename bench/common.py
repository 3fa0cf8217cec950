"""Shared benchmark helpers: the device, machine description, peak memory, result files."""

from __future__ import annotations

import json
import os
import platform
import resource
from pathlib import Path

import torch

from var_core.gpu import device_choice

RESULTS = Path(__file__).parent / "results"
EXAMPLE = Path(__file__).resolve().parents[1] / "assets" / "examples" / "demo_three_shapes.png"


def bench_device() -> tuple[torch.device, torch.dtype, str]:
    """(device, dtype for hub-like models, one-line description): CUDA where there is one (var_core.gpu's choice,
    so VAR_DEVICE / VAR_DTYPE apply), else the CPU."""
    device, dtype, _ = device_choice()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    return device, dtype, f"{device.type} ({name}), {str(dtype).removeprefix('torch.')}"


def cpu_name() -> str:
    """The CPU model and core count, e.g. "Intel(R) Xeon(R) ... × 2"."""
    info = Path("/proc/cpuinfo")
    model = next((line.split(":", 1)[1].strip() for line in info.read_text().splitlines()
                  if line.startswith("model name")), "") if info.exists() else ""
    return f"{model or platform.processor() or 'CPU'} × {os.cpu_count()}"


def machine() -> dict:
    """What the numbers were measured on."""
    return {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "device": bench_device()[2],
            "loadavg_at_start": os.getloadavg()}


def peak_rss_mib() -> float:
    """This process's peak resident memory. Linux's VmHWM, not ru_maxrss: ru_maxrss survives exec, so a child of
    a big parent (bench.run_all) would report the parent's size."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:  # not Linux: ru_maxrss is the best there is (kB on Linux, bytes on macOS)
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if platform.system() == "Darwin" else 1024)
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1]) / 1024


def write(name: str, payload: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=1))
    return path


def plain_generate(bundle, inputs: dict, new_tokens: int, implementation: str = "sdpa", **kwargs):
    """`model.generate` without our hook (transformers' own `implementation`), greedy, `new_tokens` at most: the
    user's alternative to running the model through us."""
    bundle.model.set_attn_implementation(implementation)
    with torch.no_grad():
        return bundle.model.generate(**inputs, max_new_tokens=new_tokens, do_sample=False, **kwargs)


def changed_rows(trace) -> int:
    """(layer, head, query) rows whose attention to the image VAR changed in a captured run: a benchmark of "VAR on"
    checks this is > 0, so a mode in which VAR does nothing cannot pass as a measurement."""
    return int((trace.attn_to_visual != trace.attn_to_visual_raw).any(-1).sum())
