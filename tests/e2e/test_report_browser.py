"""The HTML report in a real headless Chromium (Debian's chromium + chromium-driver, driven by Selenium).

The report of a small CNN (3 methods, an evaluation, a sanity check) is opened from disk: the page loads with
no console error, every figure is decoded and displayed, every navigation link scrolls its section to the top,
and screenshots go to ``test-artifacts/``. Without chromium the test is skipped with the reason, unless
``LUMOS_REQUIRE_BROWSER=1`` (set by ``.ci/run``), which makes a missing browser a failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import lumos
from conftest import make_gap_cnn, rand
from lumos.report import build

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = os.environ.get("LUMOS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = os.environ.get("LUMOS_CHROMEDRIVER") or shutil.which("chromedriver") or "/usr/bin/chromedriver"
METHODS = {"saliency": {}, "integrated_gradients": {"n_steps": 8}, "grad_cam": {}}

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def _missing() -> list[str]:
    missing = []
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package (pip install -e '.[dev]')")
    if not os.access(CHROMIUM, os.X_OK):
        missing.append(f"chromium ({CHROMIUM})")
    if not os.access(CHROMEDRIVER, os.X_OK):
        missing.append(f"chromedriver ({CHROMEDRIVER})")
    return missing


@pytest.fixture(scope="module")
def driver() -> Iterator[object]:
    missing = _missing()
    if missing:
        reason = (f"browser test needs {', '.join(missing)}: apt-get install chromium chromium-driver "
                  "(.ci/run does; LUMOS_REQUIRE_BROWSER=1 turns this skip into a failure)")
        if os.environ.get("LUMOS_REQUIRE_BROWSER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,900", "--no-first-run", "--disable-extensions"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    browser.set_page_load_timeout(60)
    try:
        yield browser
    finally:
        browser.quit()


@pytest.fixture(scope="module")
def report_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = make_gap_cnn()
    x = rand(3, 4, 1, 8, 8)
    explanations = [lumos.explain(model, x, method=m, **p) for m, p in METHODS.items()]
    evaluation = lumos.evaluate(model, x, explanations=explanations, seed=0, progress=False,
                                metric_params={"deletion": {"n_steps": 8}, "insertion": {"n_steps": 8}})
    sanity = lumos.sanity_check(model, x, list(METHODS), seed=0, progress=False,
                                method_params={"integrated_gradients": {"n_steps": 8}})
    with torch.no_grad():
        logits = model(x)
    path = tmp_path_factory.mktemp("browser") / "report.html"
    return build(explanations, evaluation, sanity=sanity, path=path, model_name="GapCNN <test>",
                 class_names=["zero", "one", "two"], logits=logits, max_samples=4)


def _severe(driver: object) -> list[dict]:
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def test_report_in_headless_chromium(driver: object, report_path: Path) -> None:
    from selenium.webdriver.common.by import By

    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(report_path, ARTIFACTS / "report-browser.html")
    driver.get(report_path.as_uri())
    assert driver.title == "lumos explanation report"
    assert driver.execute_script("return document.readyState") == "complete"

    # every figure decoded (naturalWidth > 0) and displayed with a visible size
    images = driver.find_elements(By.TAG_NAME, "img")
    assert len(images) >= 6   # grid, metric table, 2 faithfulness curves, sanity curve and cascade, agreement
    alts = [image.get_attribute("alt") for image in images]
    assert "sanity check: the maps as layers are randomised" in alts
    for image in images:
        natural = driver.execute_script("return [arguments[0].complete, arguments[0].naturalWidth];", image)
        assert natural[0] and natural[1] > 0, image.get_attribute("alt")
        assert image.is_displayed() and image.size["width"] > 50 and image.size["height"] > 50
    driver.save_screenshot(str(ARTIFACTS / "report-browser.png"))

    # navigation: each link brings its section to the top of the viewport
    links = driver.find_elements(By.CSS_SELECTOR, "nav.toc a")
    targets = [link.get_attribute("href").split("#", 1)[1] for link in links]
    assert targets == ["prediction", "explanations", "evaluation", "sanity", "agreement", "summary",
                       "reproducibility"]
    for link, target in zip(reversed(links), reversed(targets), strict=True):
        assert link.is_displayed()   # the navigation stays on screen (sticky) wherever the page is
        link.click()
        top = driver.execute_script(f"return document.getElementById('{target}').getBoundingClientRect().top;")
        assert abs(top) <= 2, (target, top)
        assert driver.execute_script("return location.hash") == f"#{target}"
    driver.save_screenshot(str(ARTIFACTS / "report-browser-navigated.png"))
    assert _severe(driver) == []


def test_console_errors_are_caught(driver: object, tmp_path: Path, report_path: Path) -> None:
    """The check above can fail: an external image in the same page is refused (CSP) and logged."""
    text = report_path.read_text(encoding="utf-8")
    broken = tmp_path / "broken.html"
    broken.write_text(text.replace("</main>", '<img src="https://example.invalid/x.png" alt="x"></main>'))
    driver.get_log("browser")   # drop earlier entries
    driver.get(broken.as_uri())
    assert any("Content Security Policy" in e["message"] for e in _severe(driver))


def test_wide_tables_scroll_inside_the_page(driver: object, tmp_path: Path) -> None:
    """A 16 x 16 agreement table (16 methods) scrolls in its own box: the page itself never scrolls sideways."""
    import numpy as np

    from lumos.explanation import Explanation

    g = np.random.default_rng(0)
    x = g.normal(size=(2, 6))
    explanations = [Explanation(g.normal(size=(2, 6)), method=f"a_rather_long_method_name_{i}", inputs=x,
                                targets=np.array([0, 1]), scores=np.zeros(2)) for i in range(16)]
    path = build(explanations, path=tmp_path / "wide.html", max_samples=1)
    driver.get(path.as_uri())
    width, viewport = driver.execute_script(
        "return [document.documentElement.scrollWidth, document.documentElement.clientWidth];")
    assert width <= viewport
    boxes = driver.execute_script(
        "return Array.from(document.querySelectorAll('.table-scroll')).map(b => [b.scrollWidth, b.clientWidth]);")
    assert any(inner > outer for inner, outer in boxes)  # the agreement table is wider than its box
