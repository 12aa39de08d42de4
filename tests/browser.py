"""The HTML report in a real browser: Debian's Chromium driven by Playwright.

``opened(html)`` opens a report with every network request refused (the page must need none),
waits for its script, draws every plot (``report=False``: any page, as it loads) and yields
the page with the console errors and page errors it saw. Screenshots go to
``artifacts/browser/`` at the repository root (or ``$HPTRACK_ARTIFACTS``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARTIFACTS = os.environ.get("HPTRACK_ARTIFACTS", os.path.join(ROOT, "artifacts", "browser"))


def chromium() -> str:
    """The system Chromium, installed with apt-get if this machine can; else the test skips
    saying why."""
    exe = shutil.which("chromium")
    if exe:
        return exe
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("chromium is not installed and cannot be installed here (needs root and apt-get): "
                    "apt-get install -y chromium")
    subprocess.run(["apt-get", "install", "-y", "chromium"], check=False, capture_output=True, timeout=600)
    exe = shutil.which("chromium")
    if not exe:
        pytest.skip("chromium could not be installed (apt-get install -y chromium failed; offline?)")
    return exe


@contextlib.contextmanager
def opened(html, width: int = 1300, height: int = 1000, *, report: bool = True):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (test extra) drives the browser")
    exe = chromium()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            context = browser.new_context(viewport={"width": width, "height": height}, accept_downloads=True)
            requests: list = []

            def refuse(route):
                if not route.request.url.startswith(("file:", "blob:", "data:")):
                    requests.append(route.request.url)
                    return route.abort()
                return route.continue_()

            context.route("**/*", refuse)
            page = context.new_page()
            errors: list = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            page.goto(f"file://{os.fspath(html)}")
            if report:
                page.evaluate("window.hptrack.ready.then(() => window.hptrack.drawAll())")
            page.errors = errors        # type: ignore[attr-defined]
            page.requests = requests    # type: ignore[attr-defined]
            yield page
        finally:
            browser.close()


def screenshot(page, name: str, full_page: bool = True) -> str:
    os.makedirs(ARTIFACTS, exist_ok=True)
    path = os.path.join(ARTIFACTS, f"{name}.png")
    page.screenshot(path=path, full_page=full_page)
    print(f"screenshot: {path}")
    return path


def plot_ids(page, what: str | None = None) -> list:
    sel = "figure .plot" if what is None else f"figure[data-plot='{what}'] .plot"
    return page.eval_on_selector_all(sel, "els => els.map(e => e.id)")


def rendered(page) -> dict:
    """Per plot id: the number of marks plotly drew (points, paths, bars, parcoords lines)."""
    return page.evaluate("""() => Object.fromEntries([...document.querySelectorAll('figure .plot')].map(d => [d.id,
        d.classList.contains('js-plotly-plot') ? d.querySelectorAll(
            '.scatterlayer path, .barlayer path, .parcoords-line-layers canvas, .parcoords .axis').length : -1]))""")


def trace_trials(page, pid: str, k: int = 0) -> list:
    """The trial numbers of the points trace ``k`` of plot ``pid`` shows now."""
    return page.evaluate("([id, k]) => document.getElementById(id).data[k].customdata.filter(n => n !== null)",
                         [pid, k])
