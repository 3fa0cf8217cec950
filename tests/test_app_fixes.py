"""The Compare fixes tab: every method of the registry against the baseline on the default model, in-process (the
request, its refusals before any model work, the rendering) and in a browser at laptop and phone width."""

import asyncio
import json
from pathlib import Path

import gradio as gr
import pytest
from PIL import Image

from var_core.interventions.registry import METHODS
from ui import fixes as ui_fixes
from ui import settings as ui_settings
from ui import state as ui_state
from viz.fixes import TABLE_HEADERS, fixes_figure
from tests.test_app_live import page_with_example, server  # noqa: F401 — the live server fixture

EXAMPLE = str(ui_settings.EXAMPLES_DIR / "demo_three_shapes.png")
PROMPT = "What colour is the square?"
DOCS = Path(__file__).resolve().parents[1] / "docs"


def call(image=EXAMPLE, prompt=PROMPT, **fields):
    return asyncio.run(ui_fixes.compare_fixes_request(image, prompt, progress=lambda *a, **k: None,
                                                      **{"max_new_tokens": 2, **fields}))


RUNS = ui_fixes.RUNS


@pytest.fixture(scope="module")
def every_method():
    """The baseline, every method of the registry and both probes, PAI with one parameter changed, each run's
    explanation too, on the default model."""
    return call(methods=[name for _, name in ui_fixes.method_choices()],
                method_params=json.dumps({"pai": {"alpha": 0.5}, "knockout": {"top": 4}}), max_new_tokens=2,
                explain_each=True)


def test_every_method_and_probe_runs_and_the_api_answer_names_its_settings(every_method):
    summary, held = every_method
    assert list(summary["methods"]) == RUNS == ["baseline", *[m for m in METHODS if m != "baseline"], "mask",
                                                "knockout"]
    json.dumps(summary)  # plain JSON
    assert summary["not_run"] == {}
    for name, row in summary["methods"].items():
        assert row["settings"]["method"] == name
        assert row["answer"].strip() and 0 < row["first_token_probability"] <= 1
        assert 0 <= row["visual_sink_mass"] <= row["visual_mass"] <= 1
        assert -1 <= row["answer_token_change"] <= 1 and (name != "baseline" or row["answer_token_change"] == 0)
        looked = row["where_did_it_look"]
        assert looked["answer_token"].strip() and set(looked["share_on_visual_sinks"]) == {
            "raw attention", "relevancy", "relative attention", "activation map"}
    masked = summary["methods"]["mask"]
    assert masked["settings"]["masked"].endswith("visual sinks") and masked["visual_sink_mass"] < 1e-3  # all masked
    knocked = summary["methods"]["knockout"]["settings"]["heads"]
    assert len(knocked) == 4  # the baseline's four most image-centric (layer, head) pairs
    assert summary["methods"]["mask"]["where_did_it_look"]["share_on_visual_sinks"]["raw attention"] < 1e-3
    assert summary["methods"]["pai"]["settings"]["alpha"] == 0.5  # the field overrides one default only
    assert summary["methods"]["pai"]["settings"]["gamma"] == METHODS["pai"].defaults["gamma"]
    assert summary["methods"]["pai"]["visual_mass"] > summary["methods"]["baseline"]["visual_mass"]  # α amplifies
    assert summary["methods"]["baseline"]["same_as_baseline"]
    assert ui_state.store.get(held).traces["baseline"].answer == summary["methods"]["baseline"]["answer"]


def test_render_fills_answers_figure_table_status_and_export(every_method):
    _, held = every_method
    traces = ui_state.store.get(held)
    *answers, figure, table, looked, status, export, heads = ui_fixes.render_fixes(held, 8, 3)
    assert len(answers) == len(RUNS) and all(answer["visible"] for answer in answers)
    for name, answer in zip(RUNS, answers):
        assert "".join(text for text, _ in answer["value"]) == traces.traces[name].answer
    assert isinstance(figure, Image.Image) and figure.width < 1000
    assert looked["visible"] and isinstance(looked["value"], Image.Image)
    assert looked["value"].height > len(RUNS) * 100  # one row of four maps per run
    assert len(table) == len(RUNS) and len(table[0]) == len(TABLE_HEADERS)
    assert "layer 8, head 3" in status and "alpha = 0.5" in status and "enh_para = 1.15" in status
    assert "routed_heads = 0.95" in status and "visual sinks" in status and "heads = [[" in status
    saved = json.loads(Path(export).read_text())
    assert saved["methods"]["pai"]["settings"]["alpha"] == 0.5 and saved["layer"] == 8 and saved["head"] == 3
    assert len(heads["choices"]) == traces.traces["baseline"].num_heads + 1
    assert ui_fixes.render_fixes(held, 8, -1)[len(RUNS) + 3].count("mean over heads") == 1


def test_the_figure_renders_every_method_alone_and_all_together(every_method):
    traces = ui_state.store.get(every_method[1]).traces
    titles = {name: ui_fixes.title_of(name) for name in traces}
    together = fixes_figure(traces, titles, 5, None)
    for name in traces:
        alone = fixes_figure({"baseline": traces["baseline"], name: traces[name]}, titles, 5, 0)
        assert alone.height < together.height or len(traces) == 2
    assert fixes_figure({"baseline": traces["baseline"]}, titles, 29, None).width > 0
    with pytest.raises(ValueError, match="baseline"):
        fixes_figure({"var": traces["var"]}, titles, 5, None)


def test_only_the_chosen_methods_run_and_the_others_hide(every_method):
    summary, held = call(methods=["vaf"], max_new_tokens=1)
    assert list(summary["methods"]) == ["baseline", "vaf"]
    rendered = ui_fixes.render_fixes(held, 5, -1)
    assert [answer["visible"] for answer in rendered[:len(RUNS)]] == [name in ("baseline", "vaf") for name in RUNS]
    assert not rendered[len(RUNS) + 2]["visible"]  # no explanations asked for: no grid


def test_a_probe_that_cannot_be_built_for_this_request_is_named_and_the_others_run():
    summary, held = call(methods=["var", "mask"], method_params='{"mask": {"tokens": "patch", "patch": 100000}}',
                         max_new_tokens=1)
    assert list(summary["methods"]) == ["baseline", "var"]
    assert "patch=100000: pick a visual token 0 … " in summary["not_run"]["mask"]
    status = ui_fixes.render_fixes(held, 5, -1)[len(RUNS) + 3]
    assert "**Mask tokens (probe)** did not run: patch=100000" in status


def test_rendering_before_any_comparison_changes_nothing():
    assert ui_fixes.render_fixes(None, 5, -1) == [gr.skip()] * (len(RUNS) + 6)


@pytest.fixture
def no_model_work(monkeypatch):
    def reached(*args, **kwargs):
        raise AssertionError("a bad request reached the model thread")
    monkeypatch.setattr(ui_state.slot, "submit", reached)


@pytest.mark.parametrize("fields, expected", [
    ({"methods": ["var", "magic"]}, "unknown method 'magic'; choose from baseline, var"),
    ({"methods": ["x" * 10**5]}, "unknown method 'xxxx"),
    ({"methods": {"var": 1}}, "methods must be a list"),
    ({"method_params": '{"pai": {"alpha": 50}}'}, "PAI: alpha=50 must be a number in [0, 10]"),
    ({"method_params": '{"var": {"p": 1.5}}'}, "VAR: p=1.5 must be a number in [0"),
    ({"method_params": '{"vaf": {"start_layer": 2.5}}'}, "start_layer=2.5 must be an integer"),
    ({"method_params": '{"pai": {"alpha": NaN}}'}, "alpha=nan must be a number"),
    ({"method_params": '{"pai": {"alpha": "0.5"}}'}, "PAI: alpha='0.5' must be a number in [0, 10]"),
    ({"method_params": '{"pai": {"alpha": {"x": 1}}}'}, "PAI: alpha must be a number, a word, null or a list"),
    ({"method_params": '{"spin": {"rows": "some"}}'}, "SPIN: rows='some' must be one of last, all"),
    ({"methods": ["mask"], "method_params": '{"mask": {"tokens": "all"}}'},
     "Mask tokens (probe): tokens='all' must be one of sinks, patch, random"),
    ({"methods": ["mask"], "method_params": '{"mask": {"tokens": "patch"}}'}, "needs patch"),
    ({"methods": ["knockout"], "method_params": '{"knockout": {"heads": [[1, 2, 3]]}}'},
     "must be a number, a word, null or a list of [layer, head] pairs"),
    ({"methods": ["knockout"], "method_params": '{"knockout": {"heads": [[1, -2]]}}'},
     "head=-2 must be an integer in [0"),
    ({"methods": ["knockout"], "method_params": '{"knockout": {"top": 0}}'}, "top=0 must be an integer in [1"),
    ({"explain_each": "yes"}, "explain_each must be true or false"),
    ({"method_params": '{"pai": {"beta": 1}}'}, "PAI takes alpha, start_layer, end_layer, gamma; not beta"),
    ({"method_params": '{"magic": {}}'}, "method parameters: unknown method 'magic'"),
    ({"method_params": '{"pai": 3}'}, "PAI's must be an object"),
    ({"method_params": "[1, 2]"}, "must be a JSON object"),
    ({"method_params": "{pai: 1"}, "method parameters are not valid JSON"),
    ({"method_params": " " * 5000}, None),  # blank: every default (reaches the model thread)
    ({"method_params": "{" + " " * 5000 + "}"}, "the limit is 4000"),
    ({"max_new_tokens": 0}, "max new tokens must be in [1, 128], got 0"),
    ({"pad_to_square": "yes"}, "pad_to_square must be true or false"),
])
def test_bad_methods_and_parameters_are_refused_before_any_model_work(no_model_work, fields, expected):
    if expected is None:
        with pytest.raises(AssertionError, match="reached the model thread"):
            call(**fields)
        return
    with pytest.raises(gr.Error) as error:
        call(**fields)
    assert expected in str(error.value) and len(str(error.value)) <= 300, str(error.value)[:400]


@pytest.mark.parametrize("image, prompt, fields, expected", [
    (None, PROMPT, {}, "No image"),
    (EXAMPLE, "  ", {}, "prompt is empty"),
    (EXAMPLE, PROMPT, {"method_params": '{"vaf": {"start_layer": 29, "end_layer": 40}}'},
     "VAF (ClearSight): end_layer=40 must be an integer in [30, 30]"),
    (EXAMPLE, PROMPT, {"capture_layers": "0-40"}, "this model's layers are 0 … 29"),
])
def test_bad_image_prompt_and_model_dependent_values_are_messages(image, prompt, fields, expected):
    with pytest.raises(gr.Error, match=None) as error:
        call(image, prompt, methods=["vaf"], **fields)
    assert expected in str(error.value), str(error.value)


def test_browser_compare_fixes_at_laptop_and_phone_width(server):
    """The tab as a user meets it: every method's answer, the figure and table, the page never wider than the
    screen; screenshots docs/app_fixes.png (laptop) and docs/app_fixes_phone.png, looked at by hand."""
    from playwright.sync_api import expect

    url, _ = server
    for width, height, name in ((1280, 800, "app_fixes.png"), (390, 844, "app_fixes_phone.png")):
        with page_with_example(url, PROMPT, width, height) as page:
            page.get_by_role("tab", name="Compare fixes").click()
            page.click("#compare-fixes")
            expect(page.locator("#fixes img")).to_be_visible(timeout=120_000)
            for method in ui_fixes.default_choices():
                expect(page.locator(f"#fix-answer-{method}")).to_be_visible()
            expect(page.locator("#fix-status")).to_contain_text("alpha = 0.2")
            expect(page.locator("#fix-table")).to_contain_text("on visual sinks")
            assert page.locator(".toast-body.error").count() == 0
            overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 1, overflow  # the page itself never scrolls sideways (a view may, inside it)
            page.screenshot(path=str(DOCS / name), full_page=True)
