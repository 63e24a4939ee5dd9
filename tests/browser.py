"""Render local HTML reports in headless Chromium (selenium) and report what a reader would see.

    result = render_page(path, screenshot_path, scripts={"n": "return document.images.length"})
    result.js_errors, result.plot_ids, result.values["n"]

or, to run several scripts against one loaded page:

    with open_page(path) as page:
        page.run_js("return document.title")

Tests that use it skip (with the reason) where Debian's chromium and chromium-driver are missing.
"""
from __future__ import annotations

import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
MISSING_REASON = "headless Chromium needs /usr/bin/chromium and /usr/bin/chromedriver " \
                 "(apt-get install chromium chromium-driver; make test does)"

# true once every plotly div on the page has been drawn by Plotly.newPlot
_PLOTS_READY = """
const divs = Array.from(document.querySelectorAll('.plotly-graph-div'));
return document.readyState === 'complete' && divs.every(d => d._fullLayout !== undefined && d.data !== undefined);
"""


def browser_available() -> bool:
    return CHROMIUM.is_file() and CHROMEDRIVER.is_file()


def require_browser() -> None:
    """Skip the calling test, naming what to install, when Chromium or its driver is missing."""
    if not browser_available():
        pytest.skip(MISSING_REASON)
    pytest.importorskip("selenium", reason="pip install selenium (the [test] extra)")


@dataclass
class PageResult:
    """What a headless browser saw on one page."""

    title: str
    js_errors: list[str]  # SEVERE console entries: uncaught exceptions, failed loads
    plot_ids: list[str]  # ids of the plotly divs that were drawn
    screenshot: Path | None = None
    values: dict[str, Any] = field(default_factory=dict)  # results of the `scripts` passed in


class Page:
    """One loaded page: run JavaScript, read console errors, take screenshots."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver

    def run_js(self, script: str, *args: Any) -> Any:
        """Run a script body (use `return ...`) in the page; JSON-like results come back."""
        return self.driver.execute_script(script, *args)

    def js_errors(self) -> list[str]:
        return [e["message"] for e in self.driver.get_log("browser") if e.get("level") == "SEVERE"]

    def plot_ids(self) -> list[str]:
        return self.run_js("return Array.from(document.querySelectorAll('.js-plotly-plot')).map(d => d.id)")

    def wait_for_plots(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.run_js(_PLOTS_READY):
            if time.monotonic() > deadline:
                raise TimeoutError(f"plots not drawn within {timeout_s:g} s")
            time.sleep(0.1)

    def screenshot(self, path: str | Path, *, full_page: bool = True) -> Path:
        """Save a PNG; with full_page the window grows to the page's height first (at most 16000 px)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if full_page:
            width = self.run_js("return window.outerWidth")
            height = self.run_js("return Math.max(document.body.scrollHeight, document.documentElement.scrollHeight)")
            self.driver.set_window_size(width, min(int(height) + 100, 16000))
            time.sleep(0.5)  # let responsive plots re-lay out
        self.driver.save_screenshot(str(path))
        return path


@contextmanager
def open_page(path: str | Path, *, width: int = 1400, height: int = 1000, timeout_s: float = 60.0) -> Iterator[Page]:
    """Load a local HTML file in headless Chromium, wait for its plots, and yield the page."""
    require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="fatnas-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        driver.set_page_load_timeout(timeout_s)
        driver.get(Path(path).resolve().as_uri())
        page = Page(driver)
        page.wait_for_plots(timeout_s)
        yield page
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def render_page(path: str | Path, screenshot_path: str | Path | None = None, *,
                scripts: dict[str, str] | None = None, **options: Any) -> PageResult:
    """Load `path`, run `scripts` (name -> script body), save a full-page screenshot, report errors and plots."""
    with open_page(path, **options) as page:
        values = {name: page.run_js(script) for name, script in (scripts or {}).items()}
        shot = page.screenshot(screenshot_path) if screenshot_path is not None else None
        return PageResult(title=page.driver.title, js_errors=page.js_errors(), plot_ids=page.plot_ids(),
                          screenshot=shot, values=values)
