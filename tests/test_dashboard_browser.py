"""The dashboard in a real browser, served by a real `airflow api-server` loading plugins/.

Why a real api-server and not the FastAPI app in a thread: it proves the plugin is picked up from
the plugins folder, mounted under /migration, shown in the UI's navigation, and protected by
Airflow's own login (401 without a token, 403 with a bad one). Start-up is ~10 s on these machines.

Chromium is Debian's package (`apt-get install chromium`), driven by Playwright for Python with
`executable_path` (Playwright's own browser download cannot work offline). Screenshots are kept in
.test-artifacts/ (dashboard.png: the page itself; dashboard-in-airflow.png: inside the Airflow UI).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from urllib.parse import quote

import pytest

from devtools.pgcluster import free_port
from tests.dashboard_fixtures import EXPECTED, seed_known_figures
from tests.hitl_helpers import run_dag_answering

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]  # a real api-server and a browser

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser"):
        if path := shutil.which(name):
            return path
    return None


def _http(method: str, url: str, *, body: dict | None = None, headers: dict | None = None) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture
def api_server(databases, airflow_db, tmp_path):
    """`airflow api-server` on a free 127.0.0.1 port, this test's databases, a known admin password."""
    port = free_port()
    password = secrets.token_urlsafe(12)
    pw_file = tmp_path / "passwords.json"
    pw_file.write_text(json.dumps({"admin": password}))
    env = {
        **os.environ,  # AIRFLOW_HOME, metadata DB, plugins folder, AIRFLOW_CONN_* of `databases`
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(pw_file),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(24),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
    }
    log_path = tmp_path / "api-server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "airflow", "api-server", "-H", "127.0.0.1", "-p", str(port), "-w", "1"],
            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"api-server exited with {proc.returncode}:\n{log_path.read_text()[-4000:]}")
            try:
                if _http("GET", base + "/api/v2/monitor/health")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"api-server did not answer within 120 s:\n{log_path.read_text()[-4000:]}")
            time.sleep(0.5)
        status, body = _http("POST", base + "/auth/token", body={"username": "admin", "password": password})
        assert status in (200, 201), body
        yield {"base": base, "token": json.loads(body)["access_token"], "log": log_path}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # our own process group only
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def test_dashboard_in_a_real_browser(databases, api_server, artifacts_dir):
    chromium = chromium_path()
    if chromium is None:
        pytest.skip("!!! Chromium is NOT installed: the dashboard browser test did not run. "
                    "Install Debian's package: apt-get install -y chromium !!!")
    from playwright.sync_api import sync_playwright

    conn = databases.connect()
    seed_known_figures(conn)
    conn.close()
    base, token = api_server["base"], api_server["token"]

    # The plugin is loaded and listed with its navigation entry.
    status, body = _http("GET", base + "/api/v2/plugins", headers={"Authorization": f"Bearer {token}"})
    assert status == 200, body
    plugin = next(p for p in json.loads(body)["plugins"] if p["name"] == "migration_dashboard")
    assert plugin["fastapi_apps"][0]["url_prefix"] == "/migration"
    assert plugin["external_views"][0]["url_route"] == "migration-health"

    # Airflow's login protects both routes.
    for path in ("/migration/dashboard", "/migration/dashboard/data", "/migration/data-docs/",
                 "/migration/data-docs/site/index.html", "/migration/data-docs/latest/x"):
        assert _http("GET", base + path)[0] == 401, path
        assert _http("GET", base + path, headers={"Authorization": "Bearer not-a-jwt"})[0] == 403, path
    status, body = _http("GET", base + "/migration/dashboard/data", headers={"Authorization": f"Bearer {token}"})
    assert status == 200, body
    assert json.loads(body)["dual_write"]["success_pct"] == 94.0

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        try:
            ctx = browser.new_context(viewport={"width": 1280, "height": 900})
            ctx.add_cookies([{"name": "_token", "value": token, "url": base}])  # what the UI's login sets
            page = ctx.new_page()
            t0 = time.monotonic()
            resp = page.goto(base + "/migration/dashboard", wait_until="load")
            print(f"\ndashboard page loaded in the browser in {(time.monotonic() - t0) * 1000:.0f} ms")
            assert resp is not None and resp.status == 200
            shown = {key: page.locator(f'span[data-metric="{key}"]').first.inner_text() for key in EXPECTED}
            assert shown == EXPECTED
            assert page.locator('p[data-metric="consistency_note"]').inner_text() == "no consistency runs yet"
            assert page.locator("svg.chart").count() >= 7
            assert page.locator("#chart-dual-write-hourly circle").count() == 2  # two hours hold data
            gates = page.locator('[data-phase="phase2"]').inner_text()
            assert "Dual write health" in gates and "Passed" in gates and "99.2% >= 99%" in gates
            assert "success pct 99.2" in gates  # the measured figures, one click away
            assert "Failed" in page.locator('[data-phase="phase4"]').inner_text()
            assert _shown_states(page) == latest_run_states()  # whatever earlier tests ran: Airflow's word
            audit = page.locator("#audit").inner_text()
            assert "alice" in audit and "error rates look fine" in audit
            page.screenshot(path=str(artifacts_dir / "dashboard.png"), full_page=True)

            # Inside the Airflow UI: the nav entry's page embeds the dashboard.
            ui = ctx.new_page()
            ui.goto(base + "/plugin/migration-health", wait_until="load")
            frame = ui.frame_locator("iframe").first
            frame.locator('span[data-metric="dual_write_success_pct_24h"]').wait_for(timeout=30_000)
            assert frame.locator('span[data-metric="read_new_pct"]').inner_text() == "25%"
            ui.screenshot(path=str(artifacts_dir / "dashboard-in-airflow.png"))
        finally:
            browser.close()
    assert (artifacts_dir / "dashboard.png").stat().st_size > 10_000


def latest_run_states() -> dict[str, str]:
    """Each migration DAG's latest real (not dry-run) run state, read straight from the metadata DB."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from migration_engine.dashboard import phases

    out = {}
    with create_session() as session:
        for _key, _title, dag_id in phases.PHASE_DAGS:
            runs = session.scalars(select(DagRun).where(DagRun.dag_id == dag_id)
                                   .order_by(DagRun.run_after.desc(), DagRun.id.desc())).all()
            real = [r for r in runs if not (r.conf or {}).get("dry_run")] or runs
            out[dag_id] = str(real[0].state) if real else "none"
    return out


def _shown_states(page) -> dict[str, str]:
    """dag_id -> the state the page shows for its phase row (``data-state`` of the phase block)."""
    from migration_engine.dashboard import phases

    wanted = {dag_id for _k, _t, dag_id in phases.PHASE_DAGS}
    rows = page.eval_on_selector_all("div.phase", "els => els.map(e => [e.dataset.dag, e.dataset.state])")
    return {dag: state for dag, state in rows if dag in wanted}


@pytest.fixture
def phase_runs_config(tmp_path, monkeypatch):
    """Short phase-5 checklist windows, so an early phase-5 run fails in seconds (set before the api-server
    starts: it reads the same config)."""
    from tests.cutover_fixtures import cutover_overrides, write_config

    overrides = cutover_overrides(tmp_path)
    overrides["cutover"]["checklist_timeout"] = "5s"
    return write_config(tmp_path, monkeypatch, overrides)


@pytest.mark.timeout(420)
def test_phase_states_follow_real_dag_runs_and_the_page_fits(phase_runs_config, databases, airflow_db, fake_slack,
                                                            api_server, artifacts_dir):
    """Drive real runs (setup and phase 1 succeed, phase 5 triggered too early fails on its checklist), then
    the page in Chromium: every phase row says what its latest DAG run says, the failed phase 5 names the
    failed task and why, and at 1280/1440/1920 px nothing is wider than the window (light and dark)."""
    chromium = chromium_path()
    if chromium is None:
        pytest.skip("!!! Chromium is NOT installed: the dashboard browser test did not run. "
                    "Install Debian's package: apt-get install -y chromium !!!")
    from playwright.sync_api import sync_playwright

    from tests.airflow_helpers import run_dag

    assert run_dag("migration_setup")[0] == "success"
    state, tasks = run_dag("migration_phase1_schema_prep")
    assert state == "success", tasks
    early = run_dag_answering("migration_phase5_cutover", [], timeout=120)
    assert early.state == "failed", early.tasks
    failed_tasks = sorted(t for t, st in early.tasks.items() if st == "failed")
    assert failed_tasks, early.tasks
    conn = databases.connect()
    seed_known_figures(conn)  # long audit entries and gate figures, as a busy migration has
    conn.close()
    expected = latest_run_states()
    assert expected["migration_setup"] == "success" and expected["migration_phase1_schema_prep"] == "success"
    assert expected["migration_phase5_cutover"] == "failed"

    base, token = api_server["base"], api_server["token"]
    status, body = _http("GET", base + "/migration/dashboard/data", headers={"Authorization": f"Bearer {token}"})
    assert status == 200, body
    rows = {p["dag_id"]: p for p in json.loads(body)["phases"]}
    p5 = rows["migration_phase5_cutover"]
    assert p5["run"]["run_id"] == early.dag_run.run_id
    assert p5["run"]["url"].endswith("/dags/migration_phase5_cutover/runs/" + quote(early.dag_run.run_id, safe=""))
    assert sorted(t["task"] for t in p5["failed_tasks"]) == failed_tasks
    assert all(t["reason"] and t["reason_source"] != "none" for t in p5["failed_tasks"]), \
        json.dumps(p5["failed_tasks"], indent=1, default=str)
    # The run's reason is the checklist's one combined text (every short check with its next step),
    # found in the ledger (the layer records the refusal) even though no per-gate page was sent.
    assert p5["reason"].startswith("refused migration_phase5_cutover.checklist_result: pre-cutover checklist "
                                   "not met") and "Next:" in p5["reason"], p5["reason"]
    sensors = [t for t in p5["failed_tasks"] if t["task"].startswith("check_")]
    assert sensors and all(t["reason"].startswith("gate ") and t["reason_source"] == "gate_results"
                           for t in sensors), json.dumps(sensors, indent=1, default=str)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        try:
            for scheme in ("light", "dark"):
                ctx = browser.new_context(viewport={"width": 1440, "height": 900}, color_scheme=scheme)
                ctx.add_cookies([{"name": "_token", "value": token, "url": base}])
                page = ctx.new_page()
                resp = page.goto(base + "/migration/dashboard", wait_until="load")
                assert resp is not None and resp.status == 200
                assert _shown_states(page) == expected
                block = page.locator('div.phase[data-dag="migration_phase5_cutover"]')
                assert block.get_attribute("data-state") == "failed"
                text = block.inner_text()
                assert "Failed" in text and failed_tasks[0] in text and p5["failed_tasks"][0]["reason"][:40] in text
                assert "pre-cutover checklist not met" in text, text
                link = block.locator(f'a[href="{p5["run"]["url"]}"]')
                assert link.count() == 1 and link.get_attribute("target") == "_top"
                bg = page.evaluate("getComputedStyle(document.body).backgroundColor")
                assert (bg == "rgb(17, 19, 23)") == (scheme == "dark"), bg  # prefers-color-scheme respected
                for width in (1280, 1440, 1920):
                    page.set_viewport_size({"width": width, "height": 900})
                    fit = page.evaluate("""() => ({scroll: document.documentElement.scrollWidth,
                        inner: window.innerWidth,
                        wide: [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right
                              > window.innerWidth + 1 && !e.closest('.scroll')).slice(0, 5).map(e => e.outerHTML
                              .slice(0, 120)),
                        chart: document.querySelector('#chart-dual-write-hourly').getBoundingClientRect().width,
                        section: document.querySelector('#dual-write').getBoundingClientRect().width})""")
                    assert fit["scroll"] <= fit["inner"] and not fit["wide"], (width, fit)
                    assert fit["chart"] >= 0.9 * fit["section"], (width, fit)  # charts use the full width
                    if width == 1440:
                        page.screenshot(path=str(artifacts_dir / f"dashboard-1440-{scheme}.png"), full_page=True)
                        for section in ("phases", "audit"):
                            page.locator(f"#{section}").screenshot(
                                path=str(artifacts_dir / f"dashboard-1440-{scheme}-{section}.png"))
                # sections collapse, and stay collapsed across the page's refresh
                page.locator("#audit > details > summary").click()
                assert page.locator("#audit > details").get_attribute("open") is None
                page.reload(wait_until="load")
                assert page.locator("#audit > details").get_attribute("open") is None
                if scheme == "light":  # Airflow's own theme choice (next-themes, localStorage "theme") wins
                    page.evaluate("localStorage.setItem('theme', 'dark')")
                    page.reload(wait_until="load")
                    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
                    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(17, 19, 23)"
                ctx.close()
        finally:
            browser.close()
    assert (artifacts_dir / "dashboard-1440-light.png").stat().st_size > 10_000
