"""The console commands answer --help and --version at once: their flags are read before torch, transformers and
Gradio are imported."""

import subprocess
import sys
import time
from pathlib import Path

import pytest

import var_core

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "gradio")
APP, EVAL = ["app.py"], ["-m", "var_core.eval"]
ANSWERS = {"app --help": (APP + ["--help"], "--allow-any-model"),
           "app --version": (APP + ["--version"], f"visual-sink-lens {var_core.__version__}"),
           "eval --help": (EVAL + ["--help"], "pope"),
           "eval --version": (EVAL + ["--version"], f"visual-sink-lens-eval {var_core.__version__}")}
PARSES = {"app": "import app; app.build_parser().parse_args(['--model', 'm', '--preset', 'paper', '--port', '1'])",
          "eval": "from var_core.eval.__main__ import build_parser; build_parser().parse_args(['pope', '--out', 'o'])"}


def timed(command: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    """Wall time and result of `python COMMAND` in the repository."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *command], cwd=ROOT, capture_output=True, text=True, timeout=120)
    return time.perf_counter() - start, done


@pytest.mark.parametrize("name", ANSWERS)
def test_help_and_version_answer_within_a_second(name):
    command, expected = ANSWERS[name]
    seconds, done = min((timed(command) for _ in range(2)), key=lambda run: run[0])  # the faster of two: busy machine
    assert done.returncode == 0, done.stderr
    if name.endswith("--help"):
        assert done.stdout.startswith("usage:") and expected in done.stdout
    else:
        assert done.stdout.strip() == expected
    assert seconds <= 1.0, f"{name} took {seconds:.1f} s"


@pytest.mark.parametrize("name", PARSES)
def test_parsing_a_command_line_imports_no_torch_transformers_or_gradio(name):
    _, done = timed(["-c", f"import sys; {PARSES[name]}; print([m for m in {HEAVY!r} if m in sys.modules])"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_eval_commands_are_the_experiments():
    from var_core.eval.__main__ import COMMANDS
    from var_core.eval.experiments import EXPERIMENTS
    assert COMMANDS == {name: experiment.description for name, experiment in EXPERIMENTS.items()}
