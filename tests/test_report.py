"""The one-file HTML report (`viz.report.analysis_report`): everything a reader needs, every user text escaped,
nothing fetched from outside, and a page that fits a phone (headless Chromium)."""

import base64
import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.synthetic_trace import synthetic_trace
from tests.test_app_live import CHROMIUM, CHROMIUM_ARGS
from var_core.analysis import Analysis
from viz.evidence import phi_by_layer
from viz.figures import figure_image
from viz.heatmap import attention_heatmap
from viz.report import analysis_report

HOSTILE = "<script>window.hacked = 1</script>"
SELECTION = {"layer": 2, "head": None, "query": 1, "run": "var", "log_scale": True}
SEEN = "Model input 48×80 from 640×480: resized; 15 visual tokens."


@pytest.fixture
def report(tmp_path):
    """A report of a synthetic analysis with hostile prompt and answer, a PIL view and a matplotlib figure."""
    baseline, var = synthetic_trace(var=False), synthetic_trace()
    baseline.prompt = var.prompt = f"What is it?\n{HOSTILE}"
    baseline.answer, var.answer = "<img src=x onerror=alert(1)>", "a red square"
    analysis = Analysis(baseline=baseline, var=var)
    heatmap, phi = attention_heatmap(var, 2, None, 1), phi_by_layer(var)
    figures = {"heatmap": heatmap, "φ by layer, every token": phi}
    markup = analysis_report(analysis, figures, SELECTION, SEEN)
    (tmp_path / "report.html").write_text(markup, encoding="utf-8")
    return markup, analysis, [np.asarray(var.image), np.asarray(heatmap), np.asarray(figure_image(phi))]


def embedded(markup: str) -> list[np.ndarray]:
    return [np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))
            for data in re.findall(r'src="data:image/png;base64,([^"]+)"', markup)]


def test_the_report_holds_answers_model_settings_seen_selection_and_every_figure(report):
    markup, analysis, pictures = report
    for text in ("a red square", "synthetic", SEEN, "Heatmap", "φ by layer, every token", "mean over heads",
                 "query 1 ", "with VAR", "log scale", "yes", "baseline: — · with VAR: 0.5", "1–3"):
        assert text in markup, text
    assert all(f"<td>{key}</td>" in markup for key in analysis.var.settings)
    assert "VAR did not change the answer" not in markup
    assert all(np.array_equal(found, expected) for found, expected in zip(embedded(markup), pictures, strict=True))


def test_every_user_text_is_escaped_and_nothing_is_fetched(report):
    markup = report[0]
    assert "<script" not in markup.lower() and "<img src=x" not in markup
    assert "&lt;script&gt;window.hacked = 1&lt;/script&gt;" in markup and "&lt;img src=x onerror=alert(1)&gt;" in markup
    assert not re.search(r"https?:|url\(|@import|<link|<iframe|<object", markup, re.IGNORECASE)
    assert all(value.startswith("data:image/png;base64,") for value in re.findall(r'(?:src|href)="([^"]*)"', markup))


def test_identical_answers_are_said_so():
    baseline, var = synthetic_trace(var=False), synthetic_trace()
    markup = analysis_report(Analysis(baseline=baseline, var=var), {}, {"layer": 0}, "")
    assert "VAR did not change the answer." in markup and "mean over all text queries" in markup


@pytest.mark.parametrize("width", [1280, 390])
def test_the_report_opens_offline_and_fits_the_screen(report, tmp_path, width):
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Chromium is missing: `make test` installs it (apt-get install chromium)"
    requests = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": width, "height": 800}, offline=True)
        page.on("request", lambda request: requests.append(request.url))
        page.goto((tmp_path / "report.html").as_uri())
        facts = page.evaluate("""() => ({scroll: document.documentElement.scrollWidth, hacked: window.hacked,
            images: [...document.images].map(image => [image.complete && image.naturalWidth > 0,
                                                        image.getBoundingClientRect().right])})""")
        browser.close()
    assert [url for url in requests if not url.startswith("data:")] == [(tmp_path / "report.html").as_uri()]
    assert facts["scroll"] <= width and facts.get("hacked") is None
    assert len(facts["images"]) == 3 and all(loaded and right <= width for loaded, right in facts["images"])
