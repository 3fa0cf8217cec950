"""Reopening a saved analysis (`var_core.saved.reopen`): the app's exported Traces and analysis.json give back an
Analysis whose every view is pixel-identical to the fresh one, and each wrong upload is refused in a short message."""

import dataclasses
import json
import zipfile

import numpy as np
import pytest

from tests.synthetic_trace import synthetic_trace
from var_core.analysis import Analysis, analyze
from var_core.config import VARConfig
from var_core.models import default
from var_core.saved import MAX_UNPACK_RATIO, checked_selection, reopen
from var_core.scenes import make_scene, render
from var_core.trace import Trace
from viz.compare import before_after
from viz.evidence import massive_activations, phi_attention_scatter, phi_by_layer, sink_attention_by_layer
from viz.figures import figure_image
from viz.grid import head_grid
from viz.heatmap import attention_heatmap
from viz.notebook import analysis_html
from viz.ranking import head_ranking
from viz.sinks import phi_overlay, sink_count_strip

SELECTION = {"layer": 12, "head": 3, "query": "all", "run": "var", "log_scale": True}


@pytest.fixture(scope="module")
def fresh() -> Analysis:
    """The default model's analysis of a scene, three tokens per answer."""
    return analyze(default.load_default_model(), render(make_scene(0)), "What colour is the square?", VARConfig(p=0.6),
                   max_new_tokens=3)


def export(analysis: Analysis, folder, selection=SELECTION) -> list:
    """The files the app's download writes: both Traces and analysis.json (prompt, summary, selection)."""
    document = {"prompt": analysis.var.prompt, **analysis.summary(), "selection": selection}
    (folder / "analysis.json").write_text(json.dumps(document))
    return [analysis.baseline.save(folder / "trace_baseline.npz"), analysis.var.save(folder / "trace_var.npz"),
            folder / "analysis.json"]


def pixels(view) -> np.ndarray:
    return np.asarray(view if hasattr(view, "save") else figure_image(view))


def refusal(paths, **options) -> str:
    with pytest.raises(ValueError) as caught:
        reopen(paths, **options)
    message = str(caught.value)
    assert len(message) <= 300, message
    return message


def test_a_reopened_analysis_draws_every_view_pixel_for_pixel(fresh, tmp_path):
    analysis, selection = reopen(reversed(export(fresh, tmp_path)))
    assert selection == SELECTION
    for run in ("baseline", "var"):
        for field in dataclasses.fields(Trace):
            saved, back = getattr(getattr(fresh, run), field.name), getattr(getattr(analysis, run), field.name)
            arrays = isinstance(saved, np.ndarray)
            assert np.array_equal(back, saved) and back.dtype == saved.dtype if arrays else back == saved, field.name
    layer = SELECTION["layer"]
    views = [lambda a: attention_heatmap(a.var, layer, None, "all"),
             lambda a: attention_heatmap(a.baseline, layer, 3, 0), lambda a: phi_overlay(a.var, layer),
             lambda a: before_after(a.var, layer, 3, "all", log=True),
             lambda a: head_grid(a.baseline, "all"), lambda a: sink_count_strip(a.var, layer),
             lambda a: phi_by_layer(a.var), lambda a: head_ranking(a.var), lambda a: massive_activations(a.baseline),
             lambda a: sink_attention_by_layer(a.baseline), lambda a: phi_attention_scatter(a.baseline, layer)]
    for view in views:
        assert np.array_equal(pixels(view(analysis)), pixels(view(fresh)))
    assert analysis.summary() == fresh.summary() and analysis_html(analysis) == analysis_html(fresh)


def test_the_json_is_optional_and_an_older_one_without_selection_is_read(fresh, tmp_path):
    baseline, var, document = export(fresh, tmp_path, selection=None)
    assert reopen([var, baseline]).selection is None
    assert reopen([baseline, var, document]).selection is None


@pytest.fixture
def synthetic(tmp_path):
    """A small synthetic analysis saved as the app saves it, cheap to spoil."""
    return export(Analysis(baseline=synthetic_trace(var=False), var=synthetic_trace()), tmp_path,
                  selection={"layer": 1, "head": None, "query": 2, "run": "baseline", "log_scale": False})


def test_the_selection_comes_back_checked(synthetic):
    assert reopen(synthetic).selection == {"layer": 1, "head": None, "query": 2, "run": "baseline", "log_scale": False}


def test_a_missing_trace_or_file_is_named(synthetic, tmp_path):
    baseline, var, document = synthetic
    assert "A VAR Trace is missing" in refusal([baseline, document])
    assert "A baseline Trace (without VAR) is missing" in refusal([var]) == refusal(str(var))
    assert "A baseline Trace (without VAR) is missing" in refusal(None) == refusal([])
    assert "no such file" in refusal([baseline, var, tmp_path / "gone.npz"])


def test_two_traces_of_one_run_are_refused(synthetic, tmp_path):
    baseline, var, _ = synthetic
    copy = synthetic_trace(var=False).save(tmp_path / "copy.npz")
    assert "Two files hold a baseline Trace" in refusal([baseline, copy, var])
    assert "Two files hold a VAR Trace" in refusal([baseline, var, synthetic_trace().save(tmp_path / "v2.npz")])
    assert "Two analysis JSON files" in refusal([baseline, var, synthetic[2], synthetic[2]])


def test_traces_of_another_prompt_image_or_model_are_refused(synthetic, tmp_path):
    baseline, _, _ = synthetic
    other = synthetic_trace()
    for change, word in (({"prompt": "x" * 1000}, "prompts"), ({"image": other.image + 1}, "images"),
                         ({"image": other.image[:8]}, "images"), ({"model_name": "another"}, "models")):
        path = dataclasses.replace(other, **change).save(tmp_path / "other.npz")
        assert f"different {word}" in refusal([baseline, path])


def test_a_json_that_is_not_ours_or_of_another_analysis_is_refused(synthetic, tmp_path):
    baseline, var, document = synthetic
    foreign = tmp_path / "foreign.json"
    for text in ('{"foo": 1}', "[1, 2]", '"text"', "[" * 100000):
        foreign.write_text(text)
        assert "analysis.json" in refusal([baseline, var, foreign])
    saved = json.loads(document.read_text())
    for key, value in (("prompt", "<script>" * 100), ("var_answer", "no"), ("baseline_answer", None)):
        foreign.write_text(json.dumps({**saved, key: value}))
        assert f"belongs to another analysis: its {key.replace('_', ' ')}" in refusal([baseline, var, foreign])


@pytest.mark.parametrize("selection, word", [
    ({"layer": 99}, "layer"), ({"layer": "1; drop"}, "layer"), ({}, "layer is missing"),
    ({"layer": 1, "head": 3}, "head"), ({"layer": 1, "head": float("nan")}, "head"),
    ({"layer": 1, "query": "<script>"}, "query"), ({"layer": 1, "query": 10 ** 9}, "query"),
    ({"layer": 1, "run": "both"}, "run"), ({"layer": 1, "log_scale": "yes"}, "log_scale"), ([1], "object")])
def test_a_bad_saved_selection_is_refused(synthetic, tmp_path, selection, word):
    baseline, var, document = synthetic
    document.write_text(json.dumps({**json.loads(document.read_text()), "selection": selection}))
    assert word in refusal([baseline, var, document])


def test_a_selection_of_a_layer_not_captured_is_refused():
    from tests.synthetic_trace import partial_trace

    analysis = Analysis(baseline=partial_trace(synthetic_trace(var=False), [1, 3]),
                        var=partial_trace(synthetic_trace(), [1, 3]))
    assert checked_selection({"layer": 3}, analysis)["layer"] == 3
    with pytest.raises(ValueError, match="layer 2 was not captured"):
        checked_selection({"layer": 2}, analysis)


def test_corrupt_or_foreign_files_are_refused(synthetic, tmp_path):
    baseline, var, _ = synthetic
    whole = var.read_bytes()
    spoiled = {"truncated.npz": whole[: len(whole) // 2], "noise.npz": np.random.default_rng(0).bytes(5000),
               "image.png": b"\x89PNG\r\n\x1a\n" + bytes(100), "empty.npz": b""}
    for name, data in spoiled.items():
        (tmp_path / name).write_bytes(data)
        assert "trace" in refusal([baseline, tmp_path / name]).lower()
    np.savez(tmp_path / "plain.npz", x=np.zeros(3))
    assert "not a saved Trace" in refusal([baseline, tmp_path / "plain.npz"])
    with zipfile.ZipFile(tmp_path / "bad_meta.npz", "w") as archive:
        archive.writestr("meta.npy", b"not numpy")
    assert "corrupt" in refusal([baseline, tmp_path / "bad_meta.npz"])


def test_a_trace_whose_fields_do_not_fit_is_refused(synthetic, tmp_path):
    baseline, _, _ = synthetic
    good = synthetic_trace()
    spoil = [{"attn_to_visual": good.attn_to_visual[:, :, :2]}, {"grid": (2, 2)}, {"phi": good.phi[0]},
             {"query_positions": good.query_positions + 1000}, {"tokens": "text"}, {"n_prompt": 2.5},
             {"captured_layers": ["a"]}, {"image": good.image[..., :2]}, {"selected": good.selected[:1]},
             {"profile_tokens": np.array([-1, 0, 1])}, {"image": np.array(["a"])}]
    for change in spoil:
        path = dataclasses.replace(good, **change).save(tmp_path / "spoiled.npz")
        message = refusal([baseline, path])
        assert "is corrupt" in message or "not a consistent saved Trace" in message, change
    meta_only = tmp_path / "meta.npz"
    np.savez(meta_only, meta=np.array(json.dumps({"prompt": "p"})))
    assert "corrupt" in refusal([baseline, meta_only])


def test_files_over_the_limits_are_refused(synthetic, tmp_path):
    baseline, var, _ = synthetic
    huge = tmp_path / "huge.npz"
    with huge.open("wb") as file:
        file.truncate(3 * 1024 * 1024)
    assert "3.0 MB; the limit is 2 MB per file" in refusal([baseline, var, huge], max_mb=2)
    bomb = tmp_path / "bomb.npz"
    np.savez_compressed(bomb, meta=np.array("{}"), phi=np.zeros((MAX_UNPACK_RATIO + 1) * 1024 * 1024 // 8))
    assert bomb.stat().st_size < 1024 * 1024
    assert "unpacks to 21 MB; the limit is 20 MB" in refusal([baseline, bomb], max_mb=1)


def test_long_hostile_file_names_stay_short_in_messages(synthetic, tmp_path):
    baseline, var, _ = synthetic
    long_name = tmp_path / ("<b>" * 60 + ".npz")
    long_name.write_bytes(b"x")
    assert "…" in refusal([baseline, var, long_name])
