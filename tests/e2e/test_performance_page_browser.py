"""The performance page in headless Chromium (Debian's package, driven by Playwright): rendered by the
plugin's own app from real samples of the test databases, laid out at 1280 and 1440 px in light and
dark colour schemes. Asserts no horizontal overflow (from the DOM) and that the per-table p95 cells
are visible; screenshots in .test-artifacts/performance-*.png.

The login on these routes is Airflow's (``GetUserDep``, the same router as the dashboard): proven
against a real api-server by tests/test_dashboard_browser.py and tests/test_slack_endpoint_e2e.py
(which walks every plugin route).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.test_dashboard_browser import CHROMIUM_ARGS, chromium_path
from tests.unit.test_perf import NEW, OLD, _client, _sample, _traffic, _upgraded

pytestmark = pytest.mark.timeout(240)


def test_the_performance_page_fits_1280_and_1440_px_in_light_and_dark(databases, artifacts_dir):
    chromium = chromium_path()
    if chromium is None:
        pytest.skip("!!! Chromium is NOT installed: the performance page browser test did not run. "
                    "Install Debian's package: apt-get install -y chromium !!!")
    from playwright.sync_api import sync_playwright

    _upgraded(databases)
    t0 = datetime.now(UTC) - timedelta(minutes=20)
    for i in range(4):
        _traffic(databases, 5 + i * 5)
        _sample(databases, run_id=f"r{i}", now=lambda i=i: t0 + timedelta(minutes=5 * i))
    with _client() as c:
        html = c.get("/migration/dashboard/performance").text

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        try:
            for scheme in ("light", "dark"):
                for width in (1280, 1440):
                    ctx = browser.new_context(viewport={"width": width, "height": 900}, color_scheme=scheme)
                    page = ctx.new_page()
                    page.set_content(html, wait_until="load")
                    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
                    assert overflow <= 0, f"{scheme} {width}px: page is {overflow}px wider than the window"
                    wide = page.evaluate("""() => [...document.querySelectorAll('section, table, svg')]
                        .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
                        .map(e => e.id || e.tagName)""")
                    assert wide == [], (scheme, width, wide)
                    for cell in (f"legacy.table.{OLD}.p95_ms", f"new.table.{NEW}.p95_ms"):
                        loc = page.locator(f'span[data-metric="{cell}"]')
                        assert loc.is_visible() and loc.inner_text().endswith(" ms"), cell
                    assert page.locator("svg.chart").count() == 10
                    bg = page.evaluate("getComputedStyle(document.body).backgroundColor")
                    assert (bg == "rgb(18, 20, 23)") == (scheme == "dark"), (scheme, bg)
                    page.screenshot(path=str(artifacts_dir / f"performance-{scheme}-{width}.png"), full_page=True)
                    ctx.close()
        finally:
            browser.close()
    assert (artifacts_dir / "performance-dark-1440.png").stat().st_size > 10_000
