"""The app as users reach it: a real server on a free loopback port, called through gradio_client and driven in
headless Chromium (Debian's, installed by `make test`) with Playwright."""

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file

from viz.canvas import title_height

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "assets" / "examples" / "demo_three_shapes.png"
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = "/usr/bin/chromium"
DEFAULT_MODEL = "visual-sink-lens/smollm2-llava-organism"
PROMPT = "What colour is the square?"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = free_port()
    log_path = tmp_path_factory.mktemp("server") / "app.log"
    log = open(log_path, "w")
    process = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=ROOT, stdout=log,
                               stderr=subprocess.STDOUT,
                               env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"})
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the app exited early:\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(1)
    else:
        process.kill()
        pytest.fail(f"the app did not start within 180 s:\n{log_path.read_text()[-3000:]}")
    yield url, log_path
    process.terminate()
    process.wait(timeout=30)
    log.close()


def log_count(log_path: Path, text: str) -> int:
    return log_path.read_text().count(text)


def analyses_run(log_path: Path) -> int:
    return log_count(log_path, "analysis done")


def wait_for_log(log_path: Path, text: str, count: int, timeout: float) -> None:
    """Wait until the server log holds `text` `count` times; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while log_count(log_path, text) < count:
        assert time.monotonic() < deadline, f"the server log did not show {text!r} {count} times in {timeout} s"
        time.sleep(0.1)


@contextmanager
def page_with_example(url: str, prompt: str, width: int = 1280, height: int = 800):
    """Headless Chromium on the app with the bundled example uploaded and `prompt` typed, ready to press a button."""
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Chromium is missing: `make test` installs it (apt-get install chromium)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": width, "height": height})
        page.goto(url)
        page.set_input_files("#input-image input[type=file]", str(EXAMPLE))
        page.fill("#prompt textarea", prompt)
        try:
            yield page
        finally:
            browser.close()


@pytest.fixture(scope="module")
def reference(server):
    """The API's answer for the bundled scene (greedy decoding: every later call must give the same)."""
    url, _ = server
    return Client(url, verbose=False).predict(handle_file(str(EXAMPLE)), PROMPT, api_name="/analyze")


def test_api_analyze_returns_answers_sinks_and_heads(reference):
    assert reference["baseline_answer"].strip() and reference["var_answer"].strip()
    assert len(reference["sinks"]) == 30
    assert all({"layer", "count", "token_positions"} <= set(layer) for layer in reference["sinks"])
    assert all(head["r"] >= 0.5 and head["visual_mass"] >= 0.2 for head in reference["heads"])
    assert reference["settings"]["p"] == 0.4 and reference["settings"]["tau"] == 20.0


def test_api_is_deterministic(server, reference):
    url, _ = server
    again = Client(url, verbose=False).predict(handle_file(str(EXAMPLE)), PROMPT, api_name="/analyze")
    assert (again["baseline_answer"], again["var_answer"]) == (reference["baseline_answer"], reference["var_answer"])


def test_api_bad_input_is_a_clear_error_and_the_server_keeps_serving(server):
    url, _ = server
    client = Client(url, verbose=False)
    with pytest.raises(Exception, match="prompt is empty"):
        client.predict(handle_file(str(EXAMPLE)), "   ", api_name="/analyze")
    with pytest.raises(Exception, match="must be in"):
        client.predict(handle_file(str(EXAMPLE)), "Hi?", tau=99, api_name="/analyze")
    assert httpx.get(url, timeout=5).status_code == 200


def test_api_missing_and_extra_fields_are_errors(server):
    url, _ = server
    client = Client(url, verbose=False)
    with pytest.raises(Exception, match="prompt"):
        client.predict(handle_file(str(EXAMPLE)), api_name="/analyze")
    with pytest.raises(Exception, match="unexpected keyword|not a valid|extra"):
        client.predict(handle_file(str(EXAMPLE)), "Hi?", temperature=0.7, api_name="/analyze")
    assert httpx.get(url, timeout=5).status_code == 200


def test_ui_only_callbacks_are_hidden_from_the_api(server):
    url, _ = server
    info = Client(url, verbose=False).view_api(print_info=False, return_format="dict")
    assert list(info["named_endpoints"]) == ["/analyze", "/explain", "/compare"]


def test_api_explain_returns_four_maps_per_run(server):
    url, _ = server
    answer = Client(url, verbose=False).predict(handle_file(str(EXAMPLE)), PROMPT, api_name="/explain")
    assert answer["grid"] == [8, 8] and set(answer["runs"]) == {"baseline", "VAR"}
    for run in answer["runs"].values():
        assert set(run["maps"]) == {"raw attention", "relevancy", "relative attention", "activation map"}
        assert all(abs(sum(map(sum, values)) - 1) < 1e-3 for values in run["maps"].values())
        assert set(run["mass_on_visual_sinks"]) == set(run["maps"])


def test_browser_flow(server, reference):
    from playwright.sync_api import expect

    url, log_path = server
    ARTIFACTS.mkdir(exist_ok=True)
    with page_with_example(url, PROMPT, 1440, 900) as page:
        before = analyses_run(log_path)
        expect(page.locator("#model-info")).to_contain_text("30 layers × 9 heads · float32")
        page.click("#run")
        heatmap = page.locator("#heatmap img")
        expect(heatmap).to_be_visible(timeout=120_000)
        expect(page.locator("#var-answer")).to_contain_text(reference["var_answer"].split()[0], timeout=30_000)
        expect(page.locator("#baseline-answer")).to_contain_text(reference["baseline_answer"].split()[0])
        expect(page.locator("#model-saw")).to_contain_text("64 visual tokens")
        expect(page.locator("#status")).to_contain_text("attention captured in layers all 30")
        assert page.locator(".toast-body.error").count() == 0
        assert analyses_run(log_path) == before + 1
        first_src = heatmap.get_attribute("src")
        pick_layer(page, "8")
        expect(heatmap).not_to_have_attribute("src", first_src, timeout=30_000)
        assert analyses_run(log_path) == before + 1  # re-rendered from the stored Traces, no model run
        page.screenshot(path=str(ARTIFACTS / "app.png"), full_page=True)
        page.set_viewport_size({"width": 420, "height": 900})
        page.screenshot(path=str(ARTIFACTS / "app_narrow.png"), full_page=True)


def pick_layer(page, layer: str) -> None:
    """Choose `layer` in the layer dropdown (it lists the captured layers only)."""
    page.locator("#layer input").click()
    page.get_by_role("option", name=layer, exact=True).click()


def fill_until_kept(page, selector: str, text: str) -> None:
    """Type `text` into the field and check it stays: a field just mounted by opening its accordion is sometimes
    re-rendered with its server value right after the first fill."""
    field = page.locator(selector)
    for _ in range(20):
        field.fill(text)
        page.wait_for_timeout(300)
        if field.input_value() == text:
            return
    raise AssertionError(f"{selector} did not keep {text!r} (holds {field.input_value()!r})")


def test_browser_capture_layers(server):
    """A bad 'layers to capture' is a message naming the model's layers; a good one leaves only those layers to
    pick from."""
    from playwright.sync_api import expect

    url, log_path = server
    with page_with_example(url, PROMPT, 1440, 900) as page:
        page.get_by_text("VAR settings").click()
        fill_until_kept(page, "#capture-layers textarea, #capture-layers input", "0-40")
        page.click("#run")
        expect(page.locator(".toast-body.error")).to_contain_text("this model's layers are 0 … 29", timeout=30_000)
        before = analyses_run(log_path)
        fill_until_kept(page, "#capture-layers textarea, #capture-layers input", "0-3, 8")
        page.click("#run")
        wait_for_log(log_path, "analysis done", before + 1, 120)
        expect(page.locator("#layer")).to_contain_text("captured: 0, 1, 2, 3, 8 (5 of 30)", timeout=30_000)
        page.locator("#layer input").click()
        expect(page.get_by_role("option")).to_have_count(5)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "capture_layers.png"))


def test_browser_reverse_view_and_explanations(server):
    """Click a patch of the heatmap: the reverse view fills for that patch; press the explanation button: the
    method × run grid appears. Screenshots go to tests/artifacts (docs/ keeps copies of them)."""
    from playwright.sync_api import expect

    url, log_path = server
    ARTIFACTS.mkdir(exist_ok=True)
    with page_with_example(url, PROMPT, 1400, 1000) as page:
        page.click("#run")
        heatmap = page.locator("#heatmap img")
        expect(heatmap).to_be_visible(timeout=120_000)
        patch = page.locator("#patch input")
        expect(patch).not_to_have_value("", timeout=30_000)
        tile = page.locator("#patch-tile img")
        first_tile = tile.get_attribute("src")
        box = heatmap.bounding_box()
        natural_width = heatmap.evaluate("image => image.naturalWidth")
        scale = box["width"] / natural_width
        title = title_height()  # the heatmap's title band
        heatmap.click(position={"x": 5 * scale, "y": (title + 5) * scale})  # the top-left patch
        expect(patch).to_have_value("0", timeout=30_000)
        expect(tile).not_to_have_attribute("src", first_tile, timeout=30_000)
        expect(page.locator("#reverse-tokens")).to_contain_text("square")
        page.locator("#patch-tile").screenshot(path=str(ARTIFACTS / "reverse_view.png"))
        page.screenshot(path=str(ARTIFACTS / "reverse_view_page.png"), full_page=True)
        before = log_count(log_path, "explanation started")
        page.get_by_role("tab", name="Where did it look?").click()
        page.click("#explain")
        grid = page.locator("#methods-grid img")
        expect(grid).to_be_visible(timeout=60_000)
        expect(page.locator("#explain-status")).to_contain_text("First answer token")
        assert log_count(log_path, "explanation started") == before + 1
        assert page.locator(".toast-body.error").count() == 0
        page.screenshot(path=str(ARTIFACTS / "where_did_it_look.png"), full_page=True)


def test_stop_button_ends_the_running_analysis(server):
    """Stop during decoding: the server ends that run at its next token (no answer logged), the page shows no
    error, and the next Analyze works."""
    from playwright.sync_api import expect

    url, log_path = server
    with page_with_example(url, "Describe the image in detail, every shape and colour.") as page:
        done_before = analyses_run(log_path)
        started_before, stopped_before = log_count(log_path, "analysis started"), log_count(log_path, "stopped the")
        page.click("#run")
        wait_for_log(log_path, "analysis started", started_before + 1, timeout=60)
        page.wait_for_timeout(500)  # into the baseline run's decoding (a whole request takes ≈ 5 s here)
        page.click("#stop")
        wait_for_log(log_path, "stopped the", stopped_before + 1, timeout=10)
        page.wait_for_timeout(1000)
        assert analyses_run(log_path) == done_before  # the stopped request never finished its two runs
        assert page.locator(".toast-body.error").count() == 0
        page.fill("#prompt textarea", PROMPT)
        page.click("#run")
        expect(page.locator("#heatmap img")).to_be_visible(timeout=120_000)
        assert analyses_run(log_path) == done_before + 1


def test_concurrent_users_get_their_own_results(server):
    """8 clients at once (4 image/prompt pairs, each twice): every answer equals its own pair's sequential answer."""
    from concurrent.futures import ThreadPoolExecutor

    url, _ = server
    examples = ROOT / "assets" / "examples"
    pairs = [("demo_three_shapes.png", "What colour is the square?"), ("scene_08.png", "How many shapes are there?"),
             ("scene_14.png", "Is there a red circle in the image?"), ("sketch_stars.png", "Describe the image.")]

    def ask(pair):
        client = Client(url, verbose=False)
        result = client.predict(handle_file(str(examples / pair[0])), pair[1], max_new_tokens=12, api_name="/analyze")
        return result["baseline_answer"], result["var_answer"]

    expected = {pair: ask(pair) for pair in pairs}
    assert len(set(expected.values())) > 1, "the pairs must get different answers for this test to mean anything"
    requests = pairs * 2
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(ask, requests))
    assert [expected[pair] for pair in requests] == answers
    assert time.monotonic() - started < 300


def test_browser_a_first_users_page_at_laptop_and_phone_width(server):
    """What a new user met (issue "App v3"): every tab in sight at 1440 px and on a phone (none behind a menu), the
    explanation averaging every layer by default, what VAR changed beside the answers, a failed Analyze marking the
    views stale, and on a phone a view at its own size (scrolled sideways) rather than shrunk."""
    from playwright.sync_api import expect

    url, _ = server
    ARTIFACTS.mkdir(exist_ok=True)
    tabs = ["Attention", "Where did it look?", "Heads", "Sinks", "Before / after", "Compare prompts", "Experiments",
            "Save / reopen"]
    with page_with_example(url, PROMPT, 1440, 900) as page:
        for name in tabs:
            expect(page.get_by_role("tab", name=name)).to_be_visible()
        page.click("#run")
        expect(page.locator("#changes-text")).to_contain_text("VAR did not change the answer", timeout=120_000)
        expect(page.locator("#model-input img")).to_be_visible()
        page.get_by_role("tab", name="Where did it look?").click()
        page.click("#explain")
        expect(page.locator("#explain-status")).to_contain_text("layers 0–29", timeout=60_000)
        page.locator("#input-image button[aria-label='Remove Image']").click()
        page.click("#run")
        expect(page.locator("#status")).to_contain_text("This Analyze did not complete", timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "app_laptop.png"), full_page=True)
    with page_with_example(url, PROMPT, 390, 844) as page:
        for name in tabs:
            expect(page.get_by_role("tab", name=name)).to_be_visible()
        page.click("#run")
        heatmap = page.locator("#heatmap img")
        heatmap.scroll_into_view_if_needed(timeout=120_000)
        expect(heatmap).to_be_visible(timeout=120_000)
        page.wait_for_function("() => document.querySelector('#heatmap img').naturalWidth > 0", timeout=30_000)
        shown, natural = heatmap.evaluate("image => [image.clientWidth, image.naturalWidth]")
        assert shown >= 0.9 * natural, (shown, natural)  # drawn at its own size, not shrunk to the screen
        box, frame = heatmap.bounding_box(), page.locator("#heatmap").bounding_box()
        assert box["x"] >= frame["x"] - 1  # its left edge in sight (scrolling reaches the rest)
        page.screenshot(path=str(ARTIFACTS / "app_phone.png"), full_page=True)


def test_browser_a_model_that_cannot_load_warns_once_and_keeps_the_current_one(server):
    """Picking a hub model with no hub in reach: one warning (the dropdown's blur once sent the pick a second time,
    so the load was tried, and reported, twice) and the default model stays selected."""
    from playwright.sync_api import expect

    url, log_path = server
    failed = "model llava-hf/llava-1.5-7b-hf could not be loaded"
    before = log_count(log_path, failed)
    with page_with_example(url, PROMPT, 1440, 900) as page:
        page.locator("#model input").click()
        page.get_by_role("option", name="llava-hf/llava-1.5-7b-hf", exact=True).click()
        warning = page.locator(".toast-body", has_text="cannot download llava-hf/llava-1.5-7b-hf")
        expect(warning).to_have_count(1, timeout=60_000)
        page.locator("#prompt textarea").click()  # leave the dropdown, as a user does
        page.wait_for_timeout(4000)
        assert log_count(log_path, failed) == before + 1  # tried (and reported) once
        expect(page.locator("#model input")).to_have_value(DEFAULT_MODEL)
