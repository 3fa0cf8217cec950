"""The app's handlers in-process, on the default model: analysis, re-rendering without a model run, errors."""

import asyncio
import json
import math
import time
from types import SimpleNamespace

import gradio as gr
from matplotlib.figure import Figure
import numpy as np
import pytest
from PIL import Image

from var_core.models.catalog import DEFAULT_MODEL_ID
from viz.figures import figure_image
from viz.reverse import patch_layer_head
from ui import analyze as ui_analyze
from ui import comparison as ui_comparison
from ui import experiments as ui_experiments
from ui import explanations as ui_explanations
from ui import layout as ui_layout
from ui import settings as ui_settings
from ui import state as ui_state
from ui import texts as ui_texts
from var_core.models.slot import ModelSlot
from var_core.trace import Trace
from viz.canvas import title_height

EXAMPLE = ui_settings.EXAMPLES_DIR / "demo_three_shapes.png"


class Progress:
    """Stand-in for gr.Progress that records the step names."""

    def __init__(self):
        self.steps = []

    def __call__(self, fraction, desc=None):
        self.steps.append(desc)


@pytest.fixture(scope="module")
def analysis():
    progress = Progress()
    summary, held = asyncio.run(ui_analyze.analyze_request(Image.open(EXAMPLE), "What colour is the square?",
                                                    max_new_tokens=8, progress=progress))
    return summary, held, progress.steps


def test_analysis_reports_each_step_and_both_answers(analysis):
    summary, held, steps = analysis
    result = ui_state.store.get(held)
    assert steps[0].startswith("Loading model") and "Baseline" in steps[1] and "VAR" in steps[2]
    assert summary["baseline_answer"] == result.baseline.answer and summary["var_answer"] == result.var.answer
    assert len(summary["sinks"]) == 30 and summary["settings"]["p"] == 0.4
    json.dumps(summary)  # the API answer is plain JSON


def test_render_all_fills_every_output_and_fits_the_selectors(analysis):
    _, held, _ = analysis
    result = ui_state.store.get(held)
    outputs = ui_analyze.render_all(held, 5, ui_analyze.MEAN_HEADS, "answer", "VAR", False)
    assert len(outputs) == 26
    baseline_diff, var_diff, changes, _, status, seen, model_input, layer, heads = outputs[:9]
    assert "VAR did not change the answer" in changes or "VAR changed the answer" in changes
    assert model_input["visible"] and model_input["value"].shape == result.var.image.shape
    assert "".join(text for text, _ in var_diff) == result.var.answer
    assert "τ = 20" in status and "p = 0.4" in status
    assert "visual sinks in layers" in status and "VAR did nothing" not in status  # background sinks
    assert "float32 · attention scores and softmax in float32" in status
    assert "attention captured in layers all 30" in status
    assert "128×128" in seen and "64 visual tokens" in seen
    assert [value for _, value in layer["choices"]] == list(range(30)) and layer["value"] == 5
    assert len(heads["choices"]) == 10
    # heatmap, φ overlay, grid, before/after, the patch's layer × head tile
    assert sum(isinstance(view, Image.Image) for view in outputs) == 5
    assert sum(isinstance(view, Figure) for view in outputs) == 7  # changes, sink strip, φ by layer, ranking, 3 evidence
    patch, reverse_tokens, picture = outputs[-4]["value"], outputs[-3], outputs[-1]
    assert result.var.visual_sinks[:, patch].any()  # the reverse view opens on the strongest visual sink
    assert sum(score is not None for _, score in reverse_tokens) == len(result.var.query_positions)
    assert not picture["visible"] and picture["choices"] == ["whole image (tiles in place)"]  # one view: no picker


def test_a_click_on_the_heatmap_fills_the_reverse_view_for_that_patch(analysis, monkeypatch):
    _, held, _ = analysis
    result = ui_state.store.get(held)
    monkeypatch.setattr(ui_explanations, "explain", lambda *a, **k: pytest.fail("the model must not run again"))
    top = title_height()  # the heatmap's title band; the 128 px image is drawn 336 px wide below it
    rows, cols = result.var.grid
    patch, tokens, tile = ui_analyze.pick_patch(held, 5, ui_analyze.MEAN_HEADS, "VAR", None,
                                                SimpleNamespace(index=[2, top + 2]))
    assert patch == 0 and isinstance(tile, Image.Image)
    scores = [score for _, score in tokens if score is not None]
    assert max(scores) == 1.0 and len(scores) == len(result.var.query_positions)
    bottom_right = SimpleNamespace(index=[333, top + 333])
    assert ui_analyze.pick_patch(held, 5, ui_analyze.MEAN_HEADS, "VAR", None, bottom_right)[0] == rows * cols - 1
    on_the_title = SimpleNamespace(index=[5, 3])
    assert ui_analyze.pick_patch(held, 5, ui_analyze.MEAN_HEADS, "VAR", None, on_the_title) == [gr.skip()] * 3
    other = ui_analyze.render_reverse(held, 9, 5, ui_analyze.MEAN_HEADS, "VAR")[0]
    assert [score for _, score in other] != [score for _, score in tokens]
    with pytest.raises(gr.Error, match="patch"):
        ui_analyze.render_reverse(held, rows * cols, 5, ui_analyze.MEAN_HEADS, "VAR")


def test_changing_the_layer_rerenders_from_the_trace_only(analysis, monkeypatch):
    _, held, _ = analysis
    result = ui_state.store.get(held)
    monkeypatch.setattr(ui_analyze, "analyze", lambda *a, **k: pytest.fail("the model must not run again"))
    first = ui_analyze.render_selection(held, 5, ui_analyze.MEAN_HEADS, "answer", "VAR", False)[0]
    second = ui_analyze.render_selection(held, 20, 3, "answer", "VAR", False)[0]
    assert not np.array_equal(np.asarray(first), np.asarray(second))


def test_a_missing_layer_is_a_clear_error(analysis):
    _, held, _ = analysis
    result = ui_state.store.get(held)
    with pytest.raises(gr.Error, match="layer=40 does not exist"):
        ui_analyze.render_selection(held, 40, ui_analyze.MEAN_HEADS, "answer", "VAR", False)


def test_downloads_are_pngs_npz_traces_and_json(analysis):
    _, held, _ = analysis
    result = ui_state.store.get(held)
    paths = ui_analyze.make_downloads(held, 5, ui_analyze.MEAN_HEADS, "answer", "VAR", False)
    suffixes = sorted({path.rsplit(".", 1)[1] for path in paths})
    names = {path.rsplit("/", 1)[1] for path in paths}
    assert suffixes == ["html", "json", "npz", "png"] and len(paths) == 14
    assert {"phi_by_layer.png", "phi_vs_attention.png", "phi_overlay.png", "sink_strip.png"} <= names
    for path in paths:
        if path.endswith(".png"):
            assert Image.open(path).size[0] > 100
    assert Trace.load(next(p for p in paths if p.endswith("trace_var.npz"))).answer == result.var.answer
    saved = json.loads(open(next(p for p in paths if p.endswith(".json"))).read())
    assert saved["var_answer"] == result.var.answer and saved["prompt"] == result.var.prompt
    assert saved["selection"] == {"layer": 5, "head": None, "query": "answer", "run": "var", "log_scale": False}


def test_one_layer_control_drives_every_layer_view(analysis):
    """Heatmap, before/after, token strip, φ overlay, sink strip and the φ-vs-attention scatter all follow the one
    Layer control (there was a second, separate Layer slider, and the scatter stayed at the Analyze-time layer)."""
    _, held, _ = analysis
    at = {layer: dict(zip(ui_analyze.SELECTION_VIEWS, ui_analyze.render_selection(held, layer, ui_analyze.MEAN_HEADS, "all", "VAR",
                                                                    False))) for layer in (3, 9)}
    for view in ("heatmap", "before_after", "phi_overlay", "sink_strip"):
        assert not np.array_equal(np.asarray(at[3][view] if isinstance(at[3][view], Image.Image)
                                             else figure_image(at[3][view])),
                                  np.asarray(at[9][view] if isinstance(at[9][view], Image.Image)
                                             else figure_image(at[9][view]))), view
    assert "layer 3" in at[3]["phi_vs_attention"].texts[0].get_text() + at[3]["phi_vs_attention"].axes[0].get_title()
    demo = ui_layout.build_demo()
    sliders = [block for block in demo.blocks.values() if isinstance(block, gr.Slider) and block.label == "Layer"]
    assert not sliders


def test_the_explanation_averages_every_layer_by_default_in_a_fresh_page():
    demo = ui_layout.build_demo()
    fields = {block.elem_id: block.value for block in demo.blocks.values() if block.elem_id in ("map-first", "map-last")}
    assert fields == {"map-first": 0, "map-last": ui_state.slot.current.num_layers - 1}
    *_, first, last, _ = ui_settings.model_settings(DEFAULT_MODEL_ID)
    assert (first["value"], last["value"]) == (0, ui_state.slot.current.num_layers - 1)


def test_no_plot_title_is_covered_by_a_label_badge_and_galleries_show_plots_whole():
    demo = ui_layout.build_demo()
    plots = [block for block in demo.blocks.values() if isinstance(block, gr.Plot)]
    assert len(plots) == 8 and not any(plot.show_label for plot in plots)
    galleries = [block for block in demo.blocks.values() if isinstance(block, gr.Gallery)]
    assert galleries and all(gallery.object_fit == "contain" for gallery in galleries)


def test_a_new_analysis_clears_the_explanation_and_a_failed_one_marks_the_views_stale():
    status, *views = ui_explanations.cleared_explanation()
    assert "this analysis" in status and views == [None] * 4
    line = "**default** · float32 · τ = 20"
    once = ui_analyze.stale_status(line)
    assert once.startswith(ui_texts.STALE) and once.endswith(line)
    assert ui_analyze.stale_status(once) == once  # marked once, however many fail in a row
    assert ui_analyze.stale_status("") == gr.skip()


def test_status_and_ranking_count_the_same_heads(analysis):
    _, held, _ = analysis
    outputs = ui_analyze.render_all(held, 5, ui_analyze.MEAN_HEADS, "answer", "VAR", False)
    status, table = outputs[4], outputs[12]
    count = int(table["label"].split()[0])
    assert f"{count} image-centric (layer, head) pairs VAR acts on" in status
    assert count > 0 and all(row[-1] == "yes" for row in table["value"][:min(count, 10)])


def test_explain_gives_four_maps_per_run_as_json_then_the_grid_and_downloads(analysis, monkeypatch):
    _, held, _ = analysis
    result = ui_state.store.get(held)
    progress = Progress()
    started = time.perf_counter()
    summary, explained = asyncio.run(ui_explanations.explain_request(Image.open(EXAMPLE), "What colour is the square?",
                                                         progress=progress))
    explanations = ui_state.store.get(explained)
    assert time.perf_counter() - started < 10  # all three maps, baseline and VAR, on the default model (CPU)
    assert "Baseline" in progress.steps[1] and "VAR" in progress.steps[2]
    assert summary["grid"] == [8, 8] and set(summary["runs"]) == {"baseline", "VAR"}
    for run in summary["runs"].values():
        assert list(run["maps"]) == ["raw attention", "relevancy", "relative attention", "activation map"]
        for values in run["maps"].values():
            assert np.isclose(np.sum(values), 1.0, atol=1e-4) and np.min(values) >= 0
        assert 0 < run["mass_on_visual_sinks"]["raw attention"] < 1  # the default model has visual sinks here
    assert summary["runs"]["baseline"]["answer_token"].strip() == result.baseline.answer.split()[0]
    json.dumps(summary)
    monkeypatch.setattr(ui_explanations, "explain", lambda *a, **k: pytest.fail("the views must not run the model"))
    status, picture, shares, files = ui_explanations.render_explanation(explained, "What colour is the square?")
    assert "First answer token" in status and picture.width > 4 * 200 and len(shares) == 4
    assert sorted(path.rsplit(".", 1)[1] for path in files) == ["npz", "png"]
    with np.load(next(path for path in files if path.endswith(".npz"))) as saved:
        np.testing.assert_array_equal(saved["VAR/relevancy"], explanations["VAR"].maps["relevancy"])
    with pytest.raises(gr.Error, match="Press the button"):
        ui_explanations.render_explanation(None, "")


def test_explain_a_given_answer_over_chosen_layers():
    summary, explained = asyncio.run(ui_explanations.explain_request(Image.open(EXAMPLE), "What colour is the square?",
                                                         answer=" red", map_first_layer=2, map_last_layer=10,
                                                         progress=Progress()))
    for run in summary["runs"].values():
        assert run["answer_token"].strip() == "red" and run["attention_layers"] == list(range(2, 11))
    assert "layers 2–10" in ui_explanations.render_explanation(explained, "What colour is the square?")[0]


@pytest.mark.parametrize("kwargs, message", [
    ({"prompt": "  "}, "prompt is empty"),
    ({"map_first_layer": 12, "map_last_layer": 40}, r"map layers 12 … 40 are not a range of this model.s layers 0 … 29"),
    ({"map_last_layer": math.nan}, "last map layer must be a whole number ≥ 0, got nan"),
    ({"p": None}, "p is missing"),
    ({"map_first_layer": 0, "map_last_layer": 10 ** 7}, "map layers 0 … 10000000 are not a range"),
    ({"tau": 99}, "must be in"),
])
def test_explain_turns_bad_input_into_a_clear_error(kwargs, message):
    args = {"prompt": "What colour is the square?", **kwargs}
    with pytest.raises(gr.Error, match=message):
        asyncio.run(ui_explanations.explain_request(Image.open(EXAMPLE), args.pop("prompt"), progress=Progress(), **args))


@pytest.mark.parametrize("kwargs, message", [
    ({"prompt": "   "}, "prompt is empty"),
    ({"image": None}, "No image"),
    ({"tau": 30.0}, "must be in"),
    ({"first_layer": 20, "last_layer": 3}, "not a range"),
    ({"max_new_tokens": 0}, r"max new tokens must be in \[1, 128\], got 0"),
    ({"p": 1.5}, r"p must be in \[0, 1\], got 1.5"),
    ({"model_id": "someone/unknown-model"}, "allow-list"),
])
def test_bad_requests_become_clear_ui_errors(kwargs, message):
    args = {"image": Image.open(EXAMPLE), "prompt": "What colour is the square?", **kwargs}
    with pytest.raises(gr.Error, match=message):
        asyncio.run(ui_analyze.analyze_request(args.pop("image"), args.pop("prompt"), progress=Progress(), **args))


def test_unknown_model_keeps_the_current_one():
    loaded = ui_state.slot.current_id
    with pytest.raises(gr.Error):
        asyncio.run(ui_analyze.analyze_request(Image.open(EXAMPLE), "Hi?", model_id="nobody/nothing", progress=Progress()))
    assert ui_state.slot.current_id == loaded


def test_experiments_tab_runs_a_quick_experiment(monkeypatch, tiny_bundle):
    monkeypatch.setattr(ui_state, "slot", ModelSlot(loader=lambda model_id, allow_any=False: tiny_bundle))
    table, plots = ui_experiments.run_experiment("sinks", 4, progress=Progress())
    assert table["visible"] and len(table["value"]) >= 1
    assert plots and all(isinstance(plot, Image.Image) for plot in plots)
    assert all(plot.size == plots[0].size for plot in plots)  # one size: a gallery shows each whole


def test_experiment_tables_are_rounded_and_compact():
    """The committed full POPE run as the tab shows it: numbers to 3 significant digits, intervals as one column
    (they were strings beside ~20 unrounded columns)."""
    table, _, note, _ = ui_experiments.full_results("pope")
    assert note.startswith("Last full run") and len(table.columns) <= 10
    numbers = [value for value in table.to_numpy().ravel() if isinstance(value, float)]
    assert numbers and all(len(f"{value:g}".lstrip("-0.").replace(".", "")) <= 3 for value in numbers)


def test_experiments_tab_rejects_unknown_names():
    with pytest.raises(gr.Error, match="Unknown experiment"):
        ui_experiments.run_experiment("astrology", 2, progress=Progress())


@pytest.fixture
def long_answers(analysis, monkeypatch):
    """The default model made to decode the UI's maximum number of tokens (≈ 4 s per run on 2 cores)."""
    monkeypatch.setattr(ui_state.slot.current.model.generation_config, "min_new_tokens", ui_settings.MAX_NEW_TOKENS_UI)
    return ui_state.slot.current


def start_long_request(request=None) -> asyncio.Task:
    return asyncio.create_task(ui_analyze.analyze_request(Image.open(EXAMPLE), "Describe the image.", request=request,
                                                   max_new_tokens=ui_settings.MAX_NEW_TOKENS_UI, progress=Progress()))


def test_a_cancelled_request_frees_the_model_within_a_token(long_answers):
    async def cancel_while_decoding():
        task = start_long_request()
        await asyncio.sleep(1.5)
        assert not task.done()
        task.cancel()  # what Gradio does on Stop or an API client's job.cancel()
        cancelled_at = time.perf_counter()
        with pytest.raises(asyncio.CancelledError):
            await task
        return cancelled_at

    cancelled_at = asyncio.run(cancel_while_decoding())
    assert long_answers.lock.acquire(timeout=30)
    long_answers.lock.release()
    assert time.perf_counter() - cancelled_at < 1.0  # without the stop signal decoding would go on for seconds


def test_stop_or_a_closed_tab_ends_only_that_sessions_run(long_answers):
    mine, other = SimpleNamespace(session_hash="mine"), SimpleNamespace(session_hash="other")

    async def stop_while_decoding():
        task = start_long_request(mine)
        await asyncio.sleep(1.5)
        ui_state.stop_session(other)  # another session's Stop or tab close does not touch this run
        await asyncio.sleep(0.3)
        assert not task.done()
        ui_state.stop_session(mine)
        stopped_at = time.perf_counter()
        with pytest.raises(gr.Error, match="Stopped"):
            await task
        return time.perf_counter() - stopped_at

    assert asyncio.run(stop_while_decoding()) < 1.0
    assert not ui_state.running.stop("mine")  # the finished run left no signal behind


def test_status_hints_at_tau_when_no_visual_token_passes_it(analysis):
    """At the defaults the example has visual sinks and VAR selects heads; with τ above every visual φ the status
    says VAR had nothing to act on and names the τ that would change that."""
    _, held, _ = analysis
    result = ui_state.store.get(held)
    assert "VAR did nothing" not in ui_analyze._status(result) and result.var.selected.any()
    high = ui_state.store.get(asyncio.run(ui_analyze.analyze_request(Image.open(EXAMPLE), "What colour is the square?", tau=23.9,
                                                         max_new_tokens=2, progress=Progress()))[1])
    status = ui_analyze._status(high)
    assert "VAR did nothing" in status
    largest = float(status.split("largest visual φ in the VAR layers: ")[1].split(" ")[0])
    assert largest <= 23.9 and not high.var.selected.any()

@pytest.mark.parametrize("layers, hidden, expected", [
    (30, 576, "all"),  # the default model: small enough to keep every layer
    (12, 4096, "all"),
    (32, 4096, "0,4,8,12,16,20,24,28,31"),  # LLaVA-1.5-7B: every 4th layer and the last
    (28, 3584, "0,4,8,12,16,20,24,27"),  # Qwen2-VL-7B
])
def test_the_default_layers_to_capture_follow_the_models_size(layers, hidden, expected):
    bundle = SimpleNamespace(num_layers=layers, text_config=SimpleNamespace(hidden_size=hidden))
    assert ui_settings.default_capture(bundle) == expected
    parsed = ui_settings.capture_layers(expected, layers)
    assert parsed == (None if expected == "all" else [int(layer) for layer in expected.split(",")])


def test_capturing_some_layers_offers_only_those_and_refuses_the_others(monkeypatch):
    held = asyncio.run(ui_analyze.analyze_request(Image.open(EXAMPLE), "What colour is the square?", max_new_tokens=2,
                                           capture_layers="0-3, 8,29", progress=Progress()))[1]
    result = ui_state.store.get(held)
    assert result.var.captured_layers == result.baseline.captured_layers == [0, 1, 2, 3, 8, 29]
    assert result.var.attn_to_visual.shape[0] == 6
    outputs = ui_analyze.render_all(held, 5, ui_analyze.MEAN_HEADS, "answer", "VAR", False)
    layer = outputs[7]
    assert [value for _, value in layer["choices"]] == [0, 1, 2, 3, 8, 29] and layer["value"] == 3
    assert "captured: 0, 1, 2, 3, 8, 29 (6 of 30)" in layer["label"]
    assert "attention captured in layers 0, 1, 2, 3, 8, 29 (6 of 30)" in outputs[4]
    with pytest.raises(gr.Error, match=r"layer 5 was not captured \(captured: 0, 1, 2, 3, 8, 29\)"):
        ui_analyze.render_selection(held, 5, ui_analyze.MEAN_HEADS, "answer", "VAR", False)
    assert len(ui_analyze.render_selection(held, 8, ui_analyze.MEAN_HEADS, "answer", "VAR", False)) == len(ui_analyze.SELECTION_VIEWS)


def test_the_model_saw_sentence_words_the_run_or_the_trace_itself():
    seen = {"original_size": [1024, 768], "input_size": [336, 336], "resized": True,
            "cropped": "centre-cropped to 336×336, cutting 112 px from the left and 112 px from the right",
            "padded": None, "visual_tokens": 576, "visual_token_budget": 1280, "preset": "hub"}
    trace = SimpleNamespace(settings={"seen": seen})
    assert ui_analyze.seen_sentence(trace) == ("**Part of the image was cut away before the model saw it** (the model input "
                                        "is below). Model input 336×336 from 1024×768: resized, centre-cropped to 336×336, "
                                        "cutting 112 px from the left and 112 px from the right; 576 visual tokens "
                                        "(budget 1,280).")
    saved_before = SimpleNamespace(settings={}, image=np.zeros((64, 48, 3), np.uint8), grid=(4, 4),
                                   all_image_positions=np.arange(20))
    assert ui_analyze.seen_sentence(saved_before) == ("The model saw the image at 48×64 px as 20 visual tokens, 4×4 of them "
                                               "drawn as the grid.")


def test_model_info_names_dtype_and_attention_numerics():
    info = ui_settings.model_info(ui_state.slot.current)
    assert info.startswith("30 layers × 9 heads · float32 on cpu") and "scores and softmax in float32" in info
    assert "What this model knows" in info and "photo" in info  # the default model says it knows shapes only


def test_opening_a_page_keeps_layers_to_capture_typed_before_it_loaded():
    *_, kept = ui_settings.page_settings(DEFAULT_MODEL_ID, "0-3, 8")
    *_, default = ui_settings.page_settings(DEFAULT_MODEL_ID, "")
    assert "value" not in kept and default["value"] == "all"  # a filled field is left as it is by then
    assert kept["label"] == default["label"] == "Layers to capture (this model: 0 … 29)"


def test_compare_prompts_keeps_both_analyses_and_draws_them_at_the_chosen_layer(monkeypatch):
    held = asyncio.run(ui_comparison.compare_request(str(EXAMPLE), "What colour is the square?", "How many shapes are there?",
                                           DEFAULT_MODEL_ID, 0.4, 0.5, None, 0.2, 2, None, None, True, ""))
    first, second = ui_state.store.get(held)
    assert first.var.prompt != second.var.prompt and np.array_equal(first.var.image, second.var.image)
    view, overlap, note = ui_comparison.render_comparison(held, 5)
    assert isinstance(view, Image.Image) and isinstance(overlap, Figure)
    assert "**A** What colour is the square?" in note and "Jaccard): **1.00**" in note
    assert "equal sinks are certain here" in note  # the image comes before the question in this template
    with pytest.raises(gr.Error, match="the second prompt has 5,000 characters"):
        asyncio.run(ui_comparison.compare_request(str(EXAMPLE), "Hi?", "x" * 5000, DEFAULT_MODEL_ID, 0.4, 0.5, None, 0.2,
                                        2, None, None, True, ""))


def test_a_saved_analysis_reopens_with_its_selection_and_every_view(analysis, tmp_path):
    """Downloads → upload them again (Traces and JSON, any order): the session's analysis is the saved one, the saved
    layer/head/query/run are selected, and every view renders as from the fresh analysis, without the model."""
    _, held, _ = analysis
    paths = ui_analyze.make_downloads(held, 7, 2, "all", "baseline", True)
    uploads = [path for path in paths if path.endswith((".npz", ".json"))][::-1]
    summary, reopened, layer, head, query, source, log_scale = ui_analyze.reopen_request(uploads)
    assert (layer, head, query, source, log_scale) == (7, 2, "all", "baseline", True)
    assert summary == ui_state.store.get(held).summary()
    fresh, again = (ui_analyze.render_selection(ticket, 7, 2, "all", "baseline", True) for ticket in (held, reopened))
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(fresh, again) if isinstance(a, Image.Image))
    report = open(next(path for path in paths if path.endswith("report.html")), encoding="utf-8").read()
    assert "data:image/png;base64," in report and "What colour is the square?" in report and "http" not in report
    with pytest.raises(gr.Error, match="VAR Trace is missing"):
        ui_analyze.reopen_request([p for p in uploads if not p.endswith("trace_var.npz")])


def test_pad_to_square_keeps_a_tall_image_whole_and_says_so(tmp_path):
    """A 60×240 upload: centre-cropped by the default model's processor (75 % unseen, with a warning) unless padded
    to a square first, when the model sees all of it (the padding is named)."""
    tall = Image.new("RGB", (60, 240), (200, 40, 40))
    tall.paste((40, 40, 200), (0, 0, 60, 30))  # a blue band at the top, cut away by the centre crop
    path = tmp_path / "tall.png"
    tall.save(path)
    cropped, padded = (ui_state.store.get(asyncio.run(ui_analyze.analyze_request(str(path), "What colour is the square?",
                                                                     max_new_tokens=1, pad_to_square=square,
                                                                     progress=Progress()))[1]).var
                       for square in (False, True))
    assert ui_analyze.seen_sentence(cropped).startswith("**Part of the image was cut away")
    assert "padded to a 240×240 square" in ui_analyze.seen_sentence(padded) and "cut away" not in ui_analyze.seen_sentence(padded)
    blue = lambda trace: int(((trace.image[..., 2] > 150) & (trace.image[..., 0] < 100)).sum())  # noqa: E731
    assert blue(cropped) == 0 and blue(padded) > 0


def test_the_selection_is_marked_in_every_view_that_shows_it(analysis):
    """The reverse view's patch framed on the heatmap, the query token marked in the strip, the layer and head
    marked in the head grid and the patch's layer × head tile (none of them were marked)."""
    _, held, _ = analysis
    plain = dict(zip(ui_analyze.SELECTION_VIEWS, ui_analyze.render_selection(held, 5, 2, 3, "VAR", False)))
    marked = dict(zip(ui_analyze.SELECTION_VIEWS, ui_analyze.render_selection(held, 5, 2, 3, "VAR", False, 9)))
    assert not np.array_equal(np.asarray(plain["heatmap"]), np.asarray(marked["heatmap"]))
    assert sum("▸" in text for text, _ in marked["tokens"]) == 1
    tokens, tile = ui_analyze.render_reverse(held, 9, 5, 2, "VAR")
    unmarked_tile = patch_layer_head(ui_state.store.get(held).var, 9)
    assert not np.array_equal(np.asarray(tile), np.asarray(unmarked_tile))
    with pytest.raises(gr.Error, match="patch"):
        ui_analyze.render_selection(held, 5, 2, 3, "VAR", False, "nine")


def test_a_typed_model_id_loads_once_and_a_failed_one_is_not_retried_on_leaving_the_field(monkeypatch):
    """--allow-any-model: leaving the picker loads a typed id; after a pick (or a failure reported a moment ago) it
    does nothing, so one choice is tried and reported once."""
    from var_core.models.catalog import ModelLoadError

    tried = []

    def loader(model_id, allow_any=False):
        tried.append(model_id)
        raise ModelLoadError(f"no network for {model_id}")

    current = ui_state.slot.get(DEFAULT_MODEL_ID) and ui_state.slot.current_id  # loaded before the loader fails
    monkeypatch.setattr(ui_state.slot, "_loader", loader)
    monkeypatch.setattr(ui_settings, "RECENT_FAILURES", {})
    assert ui_settings.typed_model(current) == [gr.skip()] * ui_settings.MODEL_FIELDS  # the loaded one: nothing
    first = ui_settings.typed_model("someone/custom-vlm")
    assert len(first) == ui_settings.MODEL_FIELDS and tried == ["someone/custom-vlm"]
    assert ui_settings.typed_model("someone/custom-vlm") == [gr.skip()] * ui_settings.MODEL_FIELDS
    assert tried == ["someone/custom-vlm"] and ui_state.slot.current_id == current
