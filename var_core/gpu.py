"""GPU readiness: the optional ZeroGPU decorator and the device/dtype choice for hub models.

`gpu_task(fn)` is `spaces.GPU(fn)` where the `spaces` package is importable (Hugging Face Spaces provide it; on
ZeroGPU hardware it attaches a GPU for the duration of each call), else `fn` unchanged — so the app runs the same
everywhere. `spaces` must be imported before CUDA is initialised, hence the import at the top of this module:
import `var_core.gpu` early (app.py does so before loading any model).

`device_choice()` picks where hub models run: CUDA in bfloat16 (float16 on GPUs older than Ampere, which have no
native bfloat16) spread by accelerate (`device_map="auto"`), else Apple's MPS in float16, else the CPU in float32.
`VAR_DEVICE` (cuda | mps | cpu) and `VAR_DTYPE` (bfloat16 | float16 | float32) override the choice. Half precision
is safe with the hook: it forms attention scores and softmax in float32 whatever the model's dtype (Qwen2-family q/k
biases overflow float16 otherwise), and layers it does not trace run transformers' sdpa, which accumulates in
float32 too (`tests/test_half_precision.py`).
"""

from __future__ import annotations

import os
from typing import Callable

import torch

try:  # Hugging Face Spaces (ZeroGPU); absent everywhere else
    import spaces
except ImportError:
    spaces = None

DTYPES = {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16,
          "half": torch.float16, "float32": torch.float32, "fp32": torch.float32, "float": torch.float32}


def has_spaces() -> bool:
    """True where the `spaces` package was importable (any Hugging Face Space)."""
    return spaces is not None


def on_zero_gpu() -> bool:
    """True on ZeroGPU hardware (Spaces set SPACES_ZERO_GPU there)."""
    return spaces is not None and bool(os.environ.get("SPACES_ZERO_GPU"))


def gpu_task(fn: Callable | None = None, *, duration: float | Callable | None = None):
    """`spaces.GPU(fn)` when `spaces` is importable, else `fn` unchanged.

    Use bare (`gpu_task(fn)`, `@gpu_task`) or with ZeroGPU's longest run time in seconds
    (`gpu_task(fn, duration=150)`, `@gpu_task(duration=150)`; ZeroGPU's default is 60 s). Only the function that
    runs the model should carry it: ZeroGPU runs it in a worker process and returns its (picklable) result.
    """
    if fn is None:
        return lambda f: gpu_task(f, duration=duration)
    if spaces is None:
        return fn
    if duration is None:
        return spaces.GPU(fn)
    return spaces.GPU(duration=duration)(fn)


def _cuda_dtype() -> torch.dtype:
    """bfloat16 on GPUs with native support (compute capability ≥ 8: Ampere, Ada, Hopper, …), else float16."""
    try:
        major, _ = torch.cuda.get_device_capability()
    except Exception:  # noqa: BLE001 — no device query possible (e.g. ZeroGPU outside a GPU call): assume a modern GPU
        return torch.bfloat16
    return torch.bfloat16 if major >= 8 else torch.float16


def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def device_choice() -> tuple[torch.device, torch.dtype, str | None]:
    """(device, dtype, device_map) for hub models: cuda → bf16 (fp16 before Ampere), mps → fp16, cpu → fp32.

    VAR_DEVICE / VAR_DTYPE override the device and the dtype; device_map is "auto" on CUDA only (None on ZeroGPU,
    where the model is moved with `.to("cuda")`).
    """
    wanted = os.environ.get("VAR_DEVICE", "").strip().lower()
    if wanted not in ("", "cuda", "mps", "cpu"):
        raise ValueError(f"VAR_DEVICE={wanted!r}: use cuda, mps or cpu")
    if wanted == "cuda" or (not wanted and torch.cuda.is_available()):
        # ZeroGPU wants models moved with .to("cuda") at start-up; accelerate's device_map queries a real GPU
        device, dtype, device_map = torch.device("cuda"), _cuda_dtype(), None if on_zero_gpu() else "auto"
    elif wanted == "mps" or (not wanted and mps_available()):
        device, dtype, device_map = torch.device("mps"), torch.float16, None
    else:
        device, dtype, device_map = torch.device("cpu"), torch.float32, None
    dtype_name = os.environ.get("VAR_DTYPE", "").strip().lower()
    if dtype_name:
        if dtype_name not in DTYPES:
            raise ValueError(f"VAR_DTYPE={dtype_name!r}: use bfloat16, float16 or float32")
        dtype = DTYPES[dtype_name]
    return device, dtype, device_map


def describe() -> str:
    """One log line: where hub models will run, and whether ZeroGPU's decorator is active."""
    device, dtype, device_map = device_choice()
    name = ""
    if device.type == "cuda":
        try:
            name = f" ({torch.cuda.get_device_name()})"
        except Exception:  # noqa: BLE001
            name = ""
    zero = "ZeroGPU" if on_zero_gpu() else ("spaces package present" if has_spaces() else "no spaces package")
    return (f"hub models on {device.type}{name} in {str(dtype).removeprefix('torch.')}"
            f"{', device_map=' + device_map if device_map else ''}; default model on cpu in float32; {zero}")
