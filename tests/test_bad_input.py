"""Table-driven bad input through the app's handlers: each case gets a clear, specific message (or works), and
nothing crashes. Valid-but-unusual inputs run the real default model with one new token."""

import asyncio
import io
import math

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from var_core.eval.quick import NAMES as EXPERIMENTS
from var_core.models.catalog import DEFAULT_MODEL_ID
from ui import analyze as ui_analyze
from ui import experiments as ui_experiments
from ui import explanations as ui_explanations
from ui import fields as ui_fields
from ui import fixes as ui_fixes
from ui import settings as ui_settings
from ui import state as ui_state
from var_core.models.catalog import ModelLoadError

GOOD_PROMPT = "What colour is the square?"


def save(image, path, fmt=None, **kwargs):
    image.save(path, format=fmt, **kwargs)
    return str(path)


def encoded(image, fmt):
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Every odd file a user might upload, written once."""
    folder = tmp_path_factory.mktemp("uploads")
    scene = Image.open(ui_settings.EXAMPLES_DIR / "demo_three_shapes.png").convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 8
    frames = [scene.convert("P"), scene.rotate(90).convert("P")]
    written = {
        "truncated_png": folder / "truncated.png", "truncated_jpeg": folder / "truncated.jpg",
        "text_as_png": folder / "notes.png", "empty": folder / "empty.png", "svg": folder / "drawing.png",
    }
    written["truncated_png"].write_bytes(encoded(scene, "PNG")[:300])
    written["truncated_jpeg"].write_bytes(encoded(scene, "JPEG")[:400])
    written["text_as_png"].write_text("this is a shopping list, not a picture")
    written["empty"].write_bytes(b"")
    written["svg"].write_text('<svg xmlns="http://www.w3.org/2000/svg"><circle r="5"/></svg>')
    paths = {name: str(path) for name, path in written.items()}
    paths.update({
        "gif": save(frames[0], folder / "anim.gif", "GIF", save_all=True, append_images=frames[1:]),
        "tiny": save(Image.new("RGB", (1, 1)), folder / "tiny.png"),
        "bomb": save(Image.new("1", (10000, 10000)), folder / "bomb.png"),
        "rgba": save(scene.convert("RGBA"), folder / "rgba.png"),
        "la": save(scene.convert("LA"), folder / "la.png"),
        "palette": save(scene.convert("P"), folder / "palette.png"),
        "cmyk": save(scene.convert("CMYK"), folder / "cmyk.jpg", "JPEG"),
        "gray16": save(Image.fromarray((np.asarray(scene.convert("L"), dtype=np.uint16) * 257)), folder / "g16.png"),
        "exif_rotated": save(scene, folder / "rotated.jpg", "JPEG", exif=exif),
        "wide": save(scene.resize((4000, 60)), folder / "wide.png"),
        "webp": save(scene, folder / "scene.webp", "WEBP"),
        "bmp": save(scene, folder / "scene.bmp", "BMP"),
        "good": str(ui_settings.EXAMPLES_DIR / "demo_three_shapes.png"),
    })
    return paths


OK = None
CASES = [  # (id, image key, overrides, expected message or OK)
    ("no image", None, {}, "No image"),
    ("truncated PNG", "truncated_png", {}, "could not be read"),
    ("truncated JPEG", "truncated_jpeg", {}, "could not be read"),
    ("text file renamed .png", "text_as_png", {}, "could not be read"),
    ("empty file", "empty", {}, "could not be read"),
    ("SVG renamed .png", "svg", {}, "could not be read"),
    ("1x1 image", "tiny", {}, "at least 8 px"),
    ("10000x10000 image", "bomb", {}, "limit is 40,000,000 pixels"),
    ("animated GIF", "gif", {}, OK),
    ("RGBA", "rgba", {}, OK),
    ("LA", "la", {}, OK),
    ("palette", "palette", {}, OK),
    ("CMYK JPEG", "cmyk", {}, OK),
    ("16-bit greyscale", "gray16", {}, OK),
    ("EXIF-rotated JPEG", "exif_rotated", {}, OK),
    ("4000x60 panorama", "wide", {}, OK),
    ("WebP", "webp", {}, OK),
    ("BMP", "bmp", {}, OK),
    ("empty prompt", "good", {"prompt": ""}, "prompt is empty"),
    ("whitespace prompt", "good", {"prompt": " \n\t "}, "prompt is empty"),
    ("no prompt", "good", {"prompt": None}, "prompt is empty"),
    ("20,000-character prompt", "good", {"prompt": "why " * 5000}, "the limit is 4000"),
    ("control characters", "good", {"prompt": "What\x1b[31m colour\x07 is the circle?"}, OK),
    ("null bytes", "good", {"prompt": "What colour\x00 is the circle?\x00"}, OK),
    ("only null bytes", "good", {"prompt": "\x00\x00"}, "prompt is empty"),
    ("emoji", "good", {"prompt": "What colour is the square? 🎨🟠"}, OK),
    ("right-to-left text", "good", {"prompt": "ما لون الدائرة؟ What colour is the square?"}, OK),
    ("p below 0", "good", {"p": -0.1}, "p must be in [0, 1], got -0.1"),
    ("p above 1", "good", {"p": 1.5}, "p must be in [0, 1], got 1.5"),
    ("p NaN", "good", {"p": math.nan}, "p must be a number in [0, 1], got nan"),
    ("p Infinity", "good", {"p": math.inf}, "p must be a number in [0, 1], got inf"),
    ("p None", "good", {"p": None}, "p is missing: give a number in [0, 1]"),
    ("p text", "good", {"p": "abc"}, "p must be a number in [0, 1], got 'abc'"),
    ("p a list", "good", {"p": [0.1] * 10**5}, "p must be a number in [0, 1], got list [0.1, 0.1"),
    ("p as text", "good", {"p": "0.4"}, OK),
    ("rho above 1", "good", {"rho": 2.0}, "ρ must be in [0, 1], got 2.0"),
    ("rho NaN", "good", {"rho": math.nan}, "ρ must be a number in [0, 1], got nan"),
    ("tau zero", "good", {"tau": 0}, "τ must be > 0, got 0"),
    ("tau negative", "good", {"tau": -5}, "τ must be > 0, got -5"),
    ("tau above sqrt(D)", "good", {"tau": 30}, "must be in (0, 24.0)"),
    ("tau NaN", "good", {"tau": math.nan}, "τ must be a number > 0, got nan"),
    ("tau -Infinity", "good", {"tau": -math.inf}, "τ must be a number > 0, got -inf"),
    ("min visual mass above 1", "good", {"min_visual_mass": 1.5}, "min visual mass must be in [0, 1], got 1.5"),
    ("max new tokens 0", "good", {"max_new_tokens": 0}, "max new tokens must be in [1, 128], got 0"),
    ("max new tokens huge", "good", {"max_new_tokens": 10**9}, "max new tokens must be in [1, 128], got 1000000000"),
    ("max new tokens NaN", "good", {"max_new_tokens": math.nan}, "max new tokens must be a whole number in [1, 128]"),
    ("max new tokens a fraction", "good", {"max_new_tokens": 2.5}, "must be a whole number in [1, 128], got 2.5"),
    ("first layer missing", "good", {"first_layer": 40}, "not a range"),
    ("layers reversed", "good", {"first_layer": 20, "last_layer": 3}, "not a range"),
    ("negative layer", "good", {"first_layer": -1}, "first VAR layer must be ≥ 0, got -1"),
    ("layer Infinity", "good", {"last_layer": math.inf}, "last VAR layer must be a whole number ≥ 0, got inf"),
    ("layer 10**7", "good", {"last_layer": 10**7}, "not a range"),
    ("recycle flag as text", "good", {"recycle_text_sinks": "yes"}, "recycle_text_sinks must be true or false"),
    ("unknown model id", "good", {"model_id": "someone/unknown-model"}, "allow-list"),
    ("model that fails to load", "good", {"model_id": "llava-hf/llava-1.5-7b-hf"}, "no network in this test"),
    ("capture layers a word", "good", {"capture_layers": "most"}, "'most' is not a layer or a range"),
    ("capture layer past the last", "good", {"capture_layers": "0-40"}, "this model's layers are 0 … 29"),
    ("capture range backwards", "good", {"capture_layers": "7-2"}, "runs backwards — write 2-7"),
    ("capture list with a hole", "good", {"capture_layers": "0,,4"}, "'' is not a layer"),
    ("capture negative layer", "good", {"capture_layers": "-1"}, "'-1' is not a layer"),
    ("capture a 5000-digit layer", "good", {"capture_layers": "9" * 5000}, "write at most 200"),
    ("capture a few layers", "good", {"capture_layers": "0-3, 8,29"}, OK),
]


@pytest.mark.parametrize("image_key, overrides, expected", [case[1:] for case in CASES], ids=[c[0] for c in CASES])
def test_bad_input_table(files, monkeypatch, image_key, overrides, expected):
    real_loader = ui_state.slot._loader

    def loader(model_id, allow_any=False):
        if model_id == "llava-hf/llava-1.5-7b-hf":
            raise ModelLoadError("no network in this test")
        return real_loader(model_id, allow_any)

    monkeypatch.setattr(ui_state.slot, "_loader", loader)
    kwargs = {"prompt": GOOD_PROMPT, "max_new_tokens": 1, **overrides}
    image = None if image_key is None else files[image_key]
    if expected is OK:
        summary, held = asyncio.run(ui_analyze.analyze_request(image, progress=lambda *a, **k: None, **kwargs))
        result = ui_state.store.get(held)
        assert summary["var_answer"] == result.var.answer and result.var.image.shape[2] == 3
    else:
        with pytest.raises(gr.Error) as error:
            asyncio.run(ui_analyze.analyze_request(image, progress=lambda *a, **k: None, **kwargs))
        assert expected in str(error.value) and len(str(error.value)) <= 300
    assert ui_state.slot.current_id == DEFAULT_MODEL_ID  # a failed request never loses the loaded model


def test_table_has_at_least_40_cases():
    assert len(CASES) >= 40


@pytest.fixture(scope="module")
def analysis(files):
    return asyncio.run(ui_analyze.analyze_request(files["good"], GOOD_PROMPT, max_new_tokens=2,
                                           progress=lambda *a, **k: None))[1]


@pytest.mark.parametrize("layer, head, query, expected", [
    (40, ui_analyze.MEAN_HEADS, "answer", "layer=40 does not exist"),
    (5, 50, "answer", "head=50 does not exist"),
    (5, ui_analyze.MEAN_HEADS, 999, "query=999 is out of range"),
    (5, ui_analyze.MEAN_HEADS, "everything", "must be a row index"),
])
def test_selecting_what_does_not_exist(analysis, layer, head, query, expected):
    with pytest.raises(gr.Error, match=expected):
        ui_analyze.render_selection(analysis, layer, head, query, "VAR", False)


def test_rendering_before_any_analysis_is_a_message():
    with pytest.raises(gr.Error, match="Run an analysis first"):
        ui_analyze.render_all(None, 5, ui_analyze.MEAN_HEADS, "answer", "VAR", False)


def test_an_unreadable_upload_is_refused_at_preprocessing(files):
    from gradio.data_classes import FileData

    component = ui_fields.UploadedImage(type="filepath")
    with pytest.raises(gr.Error, match="could not be read"):
        component.preprocess(FileData(path=files["text_as_png"], orig_name="notes.png"))


def test_a_decompression_bomb_upload_is_refused_as_too_large(tmp_path):
    from gradio.data_classes import FileData

    path = tmp_path / "bomb.png"
    Image.new("1", (30000, 30000)).save(path)  # 110 kB on disk, 900 M pixels decoded
    with pytest.raises(gr.Error, match="too large to open safely; the limit is 40,000,000 pixels"):
        ui_fields.UploadedImage(type="filepath").preprocess(FileData(path=str(path), orig_name="bomb.png"))


# Every numeric (and flag / text) field of every endpoint × every kind of bad value: refused before any model work,
# with a message that names the field and stays short whatever was sent.
FIELDS = {  # endpoint → field → (the name its message uses, whether empty means "the default")
    "analyze": {"p": ("p", False), "rho": ("ρ", False), "tau": ("τ", True), "min_visual_mass": ("min visual mass", False),
                "max_new_tokens": ("max new tokens", False), "first_layer": ("first VAR layer", True),
                "last_layer": ("last VAR layer", True), "recycle_text_sinks": ("recycle_text_sinks", False),
                "pad_to_square": ("pad_to_square", False)},
    "explain": {"p": ("p", False), "rho": ("ρ", False), "tau": ("τ", True), "min_visual_mass": ("min visual mass", False),
                "first_layer": ("first VAR layer", True), "last_layer": ("last VAR layer", True),
                "recycle_text_sinks": ("recycle_text_sinks", False), "map_first_layer": ("first map layer", True),
                "map_last_layer": ("last map layer", True), "pad_to_square": ("pad_to_square", False)},
    "experiment": {"n_samples": ("samples", False)},
    "compare": {"max_new_tokens": ("max new tokens", False), "pad_to_square": ("pad_to_square", False),
                "explain_each": ("explain_each", False)},
}
BAD_NUMBERS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf, "None": None, "text": "abc",
               "a long list": [1] * 10**5, "a dict": {"value": 1}, "true": True, "10**400 as text": "1" + "0" * 400,
               "a 10**6-character string": "7" * 10**6}
ENDPOINTS = {"analyze": ui_analyze.analyze_request, "explain": ui_explanations.explain_request,
             "compare": ui_fixes.compare_fixes_request}
FLAGS = {"recycle_text_sinks", "pad_to_square", "explain_each"}  # true is a good value of these
FIELD_CASES = [(endpoint, field, bad) for endpoint, fields in FIELDS.items() for field, (_, optional) in fields.items()
               for bad in BAD_NUMBERS if not (bad == "None" and optional) and not (bad == "true" and field in FLAGS)]


def call_endpoint(endpoint: str, **fields):
    if endpoint == "experiment":
        return ui_experiments.run_experiment(fields.pop("name", EXPERIMENTS[0]), fields["n_samples"],
                                  progress=lambda *a, **k: None)
    return asyncio.run(ENDPOINTS[endpoint](str(ui_settings.EXAMPLES_DIR / "demo_three_shapes.png"), GOOD_PROMPT,
                                           progress=lambda *a, **k: None, **fields))


@pytest.fixture
def no_model_work(monkeypatch):
    """Any call that reaches the model thread fails the test: validation must come first."""
    def reached(*args, **kwargs):
        raise AssertionError("a bad request reached the model thread")
    monkeypatch.setattr(ui_state.slot, "submit", reached)
    monkeypatch.setattr(ui_state.slot, "call", reached)


@pytest.mark.parametrize("endpoint, field, bad", FIELD_CASES, ids=[" · ".join(case) for case in FIELD_CASES])
def test_every_field_of_every_endpoint_refuses_every_bad_value(no_model_work, endpoint, field, bad):
    name = FIELDS[endpoint][field][0]
    with pytest.raises(gr.Error) as error:
        call_endpoint(endpoint, **{field: BAD_NUMBERS[bad]})
    assert name in str(error.value) and len(str(error.value)) <= 300, str(error.value)[:400]


@pytest.mark.parametrize("endpoint, fields, expected", [
    ("explain", {"answer": ["red"]}, "answer must be text, got list"),
    ("explain", {"answer": "red " * 1000}, "answer has 4,000 characters; the limit is 200"),
    ("experiment", {"name": "rm -rf /" * 10**4, "n_samples": 8}, "Unknown experiment 'rm -rf /rm -rf /rm -rf /rm -rf /rm -"),
    ("experiment", {"n_samples": 3}, "samples must be in [4, 80], got 3"),
    ("experiment", {"n_samples": 10**9}, "samples must be in [4, 80], got 1000000000"),
])
def test_text_fields_and_experiment_choices_are_checked_before_any_work(no_model_work, endpoint, fields, expected):
    with pytest.raises(gr.Error) as error:
        call_endpoint(endpoint, **fields)
    assert expected in str(error.value) and len(str(error.value)) <= 300


def test_the_field_table_covers_every_argument_of_every_endpoint():
    """Besides the image, the texts (checked by their own cases above and in CASES) and Gradio's own arguments."""
    import inspect
    not_numeric = {"image", "prompt", "model_id", "answer", "capture_layers", "request", "progress", "name",
                   "methods", "method_params"}  # compare's choices: tests/test_app_fixes.py
    handlers = {**ENDPOINTS, "experiment": ui_experiments.run_experiment}
    for endpoint, handler in handlers.items():
        assert set(inspect.signature(handler).parameters) - not_numeric == set(FIELDS[endpoint]), endpoint
