"""The installable package: the wheel installs one top-level package, `visual_sink_lens` (core, viz, ui, the app,
the notebook, the default model's assets and the committed results) and the entry points; installed with its
dependencies into a fresh venv it resolves them from the pinned environment and works from outside the repository.

The wheel and the venv are built once per session (tests/installed.py); setup.py's import rewriter is tested on a
hand-written module."""

import importlib.util
import json
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

import var_core
from tests.installed import NO_DEPS_ON_PURPOSE
from tests.tiny_llava import TINY_SINK_DIM, tiny_llava

ROOT = Path(__file__).resolve().parents[1]
OUTSIDE_SCRIPT = """
import importlib, json, pkgutil, sys
from pathlib import Path
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor
import visual_sink_lens
from visual_sink_lens import core, viz
from visual_sink_lens.core.models import wrap
from visual_sink_lens.core.models.default import WEIGHTS
from visual_sink_lens.core.run import generate
from visual_sink_lens.core.shipped import shipped

folder = sys.argv[1]
bundle = wrap(AutoModelForImageTextToText.from_pretrained(folder), AutoProcessor.from_pretrained(folder),
              sink_dims=[{sink_dim}], tau=1.0)
trace = generate(bundle, Image.new("RGB", (40, 40), "red"), "what colour is the square ?", max_new_tokens=2)
failed = {{}}
for module in pkgutil.walk_packages(visual_sink_lens.__path__, "visual_sink_lens."):
    if module.name != "visual_sink_lens.notebook":  # the walkthrough runs when imported
        try:
            importlib.import_module(module.name)
        except Exception as error:
            failed[module.name] = repr(error)
print(json.dumps({{"core": core.__file__, "viz": viz.__file__, "weights": str(WEIGHTS), "version": visual_sink_lens.__version__,
                  "weights_size": WEIGHTS.stat().st_size, "examples": len(list((shipped("assets") / "examples").glob("*.png"))),
                  "results": (shipped("results") / "pope" / "summary.json").is_file(), "failed": failed,
                  "old_names": sorted(name for name in ("var_core", "viz", "ui", "app") if name in sys.modules),
                  "family": bundle.adapter.family, "tokens": len(trace.tokens), "sinks": trace.settings["sink_dims"]}}))
"""
HAND_WRITTEN = '''"""Docstrings naming var_core.models stay as they are."""
import os, var_core.models as m
import viz
import var_core.trace
from var_core.models import (wrap,
                             load_default_model)  # a comment: from var_core import x
from ui import state
from . import sibling
from .viz import y
from uix import z
if True: from viz.grid import head_grid; import json
def f(x: dict = {1: 2}): import viz.grid as g
spec = importlib.import_module("var_core.models.llava")
anchor, entry = files('var_core._assets'), "var_core.eval.__main__:main"
words = ["ui", "viz", "var_core.models is in this sentence", "viz.unknown_module", b"var_core.models"]
'''
REWRITTEN = '''"""Docstrings naming var_core.models stay as they are."""
import os; import visual_sink_lens.core.models as m
from visual_sink_lens import viz
import visual_sink_lens.core.trace; from visual_sink_lens import core as var_core
from visual_sink_lens.core.models import (wrap,
                             load_default_model)  # a comment: from var_core import x
from visual_sink_lens.ui import state
from . import sibling
from .viz import y
from uix import z
if True: from visual_sink_lens.viz.grid import head_grid; import json
def f(x: dict = {1: 2}): import visual_sink_lens.viz.grid as g
spec = importlib.import_module("visual_sink_lens.core.models.llava")
anchor, entry = files('visual_sink_lens.core._assets'), "visual_sink_lens.core.eval.__main__:main"
words = ["ui", "viz", "var_core.models is in this sentence", "viz.unknown_module", b"var_core.models"]
'''


def load_setup():
    """setup.py as a module (it calls setup() only when setuptools runs it as __main__)."""
    spec = importlib.util.spec_from_file_location("visual_sink_lens_setup", ROOT / "setup.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_build_renames_imports_and_module_strings_and_nothing_else():
    setup = load_setup()
    modules = {"var_core", "var_core.models", "var_core.models.llava", "var_core.trace", "var_core.eval",
               "var_core.eval.__main__", "var_core._assets", "viz", "viz.grid", "ui", "ui.state"}
    assert setup.rewrite(HAND_WRITTEN, modules) == REWRITTEN
    assert setup.rewrite(REWRITTEN, modules) == REWRITTEN  # a second build of an up-to-date file changes nothing
    assert setup.leftovers(REWRITTEN, modules) == []
    assert len(setup.leftovers(HAND_WRITTEN, modules)) == 10
    assert setup.leftovers('name = f"var_core.models.{family}"', modules) == [
        "line 1: an f-string starting 'var_core.models.'"]  # the build fails on what it cannot rename


def test_the_wheel_installs_one_top_level_package_with_the_app_the_assets_and_the_entry_points(wheel):
    assert wheel.name == f"visual_sink_lens-{var_core.__version__}-py3-none-any.whl"
    info_dir = f"visual_sink_lens-{var_core.__version__}.dist-info"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = {name: archive.read(f"{info_dir}/{name}").decode()
                for name in ("METADATA", "entry_points.txt", "top_level.txt", "RECORD")}
        weights = archive.getinfo("visual_sink_lens/core/_assets/default_model.safetensors").file_size
        app = archive.read("visual_sink_lens/app.py").decode()
    recorded = {line.split(",")[0].split("/")[0] for line in info["RECORD"].splitlines()}
    assert recorded == {"visual_sink_lens", info_dir} and {name.split("/")[0] for name in names} == recorded
    assert info["top_level.txt"].split() == ["visual_sink_lens"]
    for module in ("__init__.py", "app.py", "notebook.py", "core/__init__.py", "core/explain/maps.py",
                   "core/models/catalog.py", "core/eval/__main__.py", "viz/__init__.py", "viz/explain.py",
                   "ui/layout.py", "core/_assets/examples/examples.json", "core/_assets/examples/demo_three_shapes.png",
                   "core/_assets/default_model_card.md", "core/_results/pope/summary.json"):
        assert f"visual_sink_lens/{module}" in names, module
    assert weights == (ROOT / "assets" / "default_model.safetensors").stat().st_size
    assert not any(name.endswith((".jsonl", ".pyi")) for name in names)
    assert "from visual_sink_lens.ui.layout import build_demo" in app and "from ui." not in app
    assert "visual-sink-lens = visual_sink_lens.app:main" in info["entry_points.txt"]
    assert "visual-sink-lens-eval = visual_sink_lens.core.eval.__main__:main" in info["entry_points.txt"]
    assert f"Version: {var_core.__version__}" in info["METADATA"]
    assert "Requires-Dist: torch" in info["METADATA"] and 'gradio<7,>=6.31; extra == "app"' in info["METADATA"]


def versions_to_try(*requirements: Requirement) -> list[Version]:
    """Every version a clause of these requirements names, the next ones up and a far one: where ranges differ."""
    tried = {Version("9999")}
    for requirement in requirements:
        for clause in requirement.specifier:
            version = Version(clause.version.replace(".*", ""))
            release = list(version.release)
            tried |= {version, Version(f"{release[0] + 1}"),
                      Version(".".join(map(str, release[:-1] + [release[-1] + 1])))}
    return sorted(tried)


def test_the_ranges_admit_the_pins_and_nothing_that_gradio_forbids():
    """requirements.txt's pins satisfy pyproject.toml's ranges, and no range outside `[app]` admits a version that
    Gradio (or its client) excludes: else installing `[app]` after the rest would move that package."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    ours = {"": project["dependencies"], **project["optional-dependencies"]}
    lines = [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    pins = {canonicalize_name(r.name): next(iter(r.specifier)).version for r in map(Requirement, filter(None, lines))}
    gradios = [Requirement(text) for dist in ("gradio", "gradio_client") for text in metadata.requires(dist)]
    gradios = [r for r in gradios if r.marker is None or r.marker.evaluate()]
    problems = []
    for extra, texts in ours.items():
        for requirement in map(Requirement, texts):
            name = canonicalize_name(requirement.name)
            if name in pins and not requirement.specifier.contains(pins[name], prereleases=True):
                problems.append(f"pyproject's {requirement} excludes requirements.txt's {name}=={pins[name]}")
            for theirs in (r for r in gradios if canonicalize_name(r.name) == name and extra != "app"):
                admitted = [str(v) for v in versions_to_try(requirement, theirs)
                            if requirement.specifier.contains(v) and not theirs.specifier.contains(v)]
                if admitted:
                    problems.append(f"pyproject's {requirement} admits {', '.join(admitted)}, which Gradio's "
                                    f"{theirs} excludes")
    assert not problems, "\n".join(problems)


def test_it_installs_with_its_dependencies_resolved_from_the_pinned_environment(installed):
    """pip resolved every dependency, [app,dev] included, from the installed pins: it installed only the wheel, which
    added one top-level name to site-packages."""
    installed_now = [line for line in installed.install_log.splitlines() if line.startswith("Successfully installed")]
    assert installed_now == [f"Successfully installed visual-sink-lens-{var_core.__version__}"], installed.install_log
    added = {path.name for path in installed.site.iterdir()} - {"_this_environment.pth", "__pycache__"}
    assert added == {"visual_sink_lens", f"visual_sink_lens-{var_core.__version__}.dist-info"}
    assert "Requirement already satisfied: gradio" in installed.install_log
    problems = [line for line in installed.check_log.splitlines()
                if line.strip() and not line.startswith(("No broken requirements", *NO_DEPS_ON_PURPOSE))]
    assert not problems, installed.check_log


def test_installed_elsewhere_it_runs_from_outside_the_repository(installed, tmp_path):
    outside, model = tmp_path / "outside", tmp_path / "tiny-model"
    outside.mkdir()
    for command, flag, expected in (("visual-sink-lens", "--help", "--allow-any-model"),
                                    ("visual-sink-lens", "--version", f"visual-sink-lens {var_core.__version__}"),
                                    ("visual-sink-lens-eval", "--help", "pope")):
        done = installed.run(installed.bin / command, flag, cwd=outside)
        assert done.returncode == 0 and expected in done.stdout, done.stderr[-2000:]
    bundle = tiny_llava(seed=2)
    bundle.model.save_pretrained(model)
    bundle.processor.save_pretrained(model)
    done = installed.run(installed.python, "-c", OUTSIDE_SCRIPT.format(sink_dim=TINY_SINK_DIM), model, cwd=outside)
    assert done.returncode == 0, done.stderr[-3000:]
    facts = json.loads(done.stdout.strip().splitlines()[-1])
    for package in ("core", "viz"):
        assert Path(facts[package]).is_relative_to(installed.site)  # the installed copy, not the repository's
    assert facts["failed"] == {} and facts["old_names"] == []  # every module imports, none under its clone name
    assert facts["version"] == var_core.__version__
    assert Path(facts["weights"]).is_relative_to(installed.site) and facts["weights_size"] > 10_000_000
    assert facts["examples"] >= 5 and facts["results"]
    assert facts["family"] == "llava" and facts["sinks"] == [TINY_SINK_DIM] and facts["tokens"] > 16
