"""The installable package: the wheel holds both packages, the app, the default model's assets and the entry
points; installed (--no-deps) into a fresh folder it works from outside the repository."""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import var_core
from tests.tiny_llava import TINY_SINK_DIM, tiny_llava

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ["pyproject.toml", "README.md", "LICENSE", "app.py", "ui", "var_core", "viz", "assets", "results"]
OUTSIDE_SCRIPT = """
import json, sys
from pathlib import Path
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor
import var_core, viz
from var_core.models import wrap
from var_core.models.default import WEIGHTS
from var_core.run import generate
from var_core.shipped import shipped

folder = sys.argv[1]
bundle = wrap(AutoModelForImageTextToText.from_pretrained(folder), AutoProcessor.from_pretrained(folder),
              sink_dims=[{sink_dim}], tau=1.0)
trace = generate(bundle, Image.new("RGB", (40, 40), "red"), "what colour is the square ?", max_new_tokens=2)
print(json.dumps({{"var_core": var_core.__file__, "viz": viz.__file__, "weights": str(WEIGHTS),
                  "weights_size": WEIGHTS.stat().st_size, "examples": len(list((shipped("assets") / "examples").glob("*.png"))),
                  "results": (shipped("results") / "pope" / "summary.json").is_file(),
                  "family": bundle.adapter.family, "tokens": len(trace.tokens), "sinks": trace.settings["sink_dims"]}}))
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """`pip wheel --no-deps` of a copy of the sources (the build writes build/ and *.egg-info beside them)."""
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy2
        copy(ROOT / name, source / name, **({"ignore": shutil.ignore_patterns("__pycache__", "*.jsonl")}
                                             if (ROOT / name).is_dir() else {}))
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet", ".",
                    "-w", str(dist)], cwd=source, check=True, capture_output=True)
    (built,) = dist.glob("*.whl")
    return built


def test_the_wheel_holds_both_packages_the_app_the_assets_and_the_entry_points(wheel):
    assert wheel.name == f"visual_sink_lens-{var_core.__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = {name.rsplit("/", 1)[1]: archive.read(name).decode() for name in names if ".dist-info/" in name
                and name.endswith(("METADATA", "entry_points.txt"))}
        weights = archive.getinfo("var_core/_assets/default_model.safetensors").file_size
    for module in ("var_core/__init__.py", "var_core/explain/maps.py", "var_core/models/catalog.py",
                   "var_core/eval/__main__.py", "viz/__init__.py", "viz/explain.py", "ui/layout.py", "visual_sink_lens/app.py",
                   "var_core/_assets/examples/examples.json", "var_core/_assets/default_model_card.md",
                   "var_core/_results/pope/summary.json"):
        assert module in names, module
    assert weights == (ROOT / "assets" / "default_model.safetensors").stat().st_size
    assert not any(name.startswith(("tests/", "bench/", "docs/")) or name.endswith(".jsonl") for name in names)
    assert "visual-sink-lens = visual_sink_lens.app:main" in info["entry_points.txt"]
    assert "visual-sink-lens-eval = var_core.eval.__main__:main" in info["entry_points.txt"]
    assert f"Version: {var_core.__version__}" in info["METADATA"]
    assert "Requires-Dist: torch" in info["METADATA"] and 'gradio<7,>=6; extra == "app"' in info["METADATA"]


def test_installed_elsewhere_it_runs_from_outside_the_repository(wheel, tmp_path):
    site, outside, model = tmp_path / "site", tmp_path / "outside", tmp_path / "tiny-model"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(site),
                    str(wheel)], check=True, capture_output=True)
    outside.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "GRADIO_ANALYTICS_ENABLED": "False"}

    def run(*command):
        return subprocess.run(command, cwd=outside, env=env, capture_output=True, text=True, timeout=300)

    for command, flag, expected in (("visual-sink-lens", "--help", "--allow-any-model"),
                                    ("visual-sink-lens", "--version", f"visual-sink-lens {var_core.__version__}"),
                                    ("visual-sink-lens-eval", "--help", "pope")):
        done = run(str(site / "bin" / command), flag)
        assert done.returncode == 0 and expected in done.stdout, done.stderr[-2000:]
    bundle = tiny_llava(seed=2)
    bundle.model.save_pretrained(model)
    bundle.processor.save_pretrained(model)
    done = run(sys.executable, "-c", OUTSIDE_SCRIPT.format(sink_dim=TINY_SINK_DIM), str(model))
    assert done.returncode == 0, done.stderr[-3000:]
    facts = json.loads(done.stdout.strip().splitlines()[-1])
    for package in ("var_core", "viz"):
        assert Path(facts[package]).is_relative_to(site)  # the installed copy, not the repository's
    assert Path(facts["weights"]).is_relative_to(site) and facts["weights_size"] > 10_000_000
    assert facts["examples"] >= 5 and facts["results"]
    assert facts["family"] == "llava" and facts["sinks"] == [TINY_SINK_DIM] and facts["tokens"] > 16
