"""Acceptance (issue 14, item 2): the one route an anonymous caller reaches, inside a real API server.

``POST /slack/interactivity`` must be reachable without an Airflow login, in the process that serves
the Airflow UI and REST API, so it refuses before reading the body (source rate limit, Content-Type,
signature headers, Content-Length) and reads with a cap (chunked bodies too); everything else the
plugins mount needs a login. Its own API server: the rate-limit test locks 127.0.0.1 out for a minute.
"""

from __future__ import annotations

import http.client
import json
import os
import select
import socket
import threading
import time
from types import SimpleNamespace

import pytest

from tests.slack_fixtures import ApiServer, control_database, form_body, signed_headers, write_config

SECRET = "endpoint-e2e-secret-0d1e2f"
FAKE_SIGNATURE = "v0=" + "ab" * 32  # well-formed, wrong
MiB = 2**20
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def server(pg_cluster, airflow_db, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("slack_endpoint_e2e")
    dsn = control_database(pg_cluster, "slack_endpoint_e2e")
    env = {**os.environ, "MIGRATION_CONFIG": str(write_config(tmp / "migration.yaml")),
           "AIRFLOW_CONN_BREEDERHQ_DB": dsn, "AIRFLOW_CONN_MARKETPLACE_DB": dsn,
           "AIRFLOW_CONN_SLACK_API_DEFAULT": json.dumps({
               "conn_type": "slack", "password": "xoxb-unused",
               "extra": {"base_url": "http://127.0.0.1:9/api/", "signing_secret": SECRET}})}
    env.pop("SLACK_SIGNING_SECRET", None)
    srv = ApiServer(env, tmp / "api-server.log").start()
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


def _raw(srv: ApiServer, headers: dict[str, str], body_chunks=(), *, chunked: bool = False,
         timeout: float = 30) -> SimpleNamespace:
    """POST /slack/interactivity over a plain socket, sending the body as it goes; returns the status
    and JSON answer, and how many body bytes the server let us send before it answered or hung up."""
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=timeout)
    head = "POST /slack/interactivity HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    if chunked:
        head += "Transfer-Encoding: chunked\r\n"
    sock.sendall((head + "\r\n").encode())
    sent = 0
    try:
        for chunk in body_chunks:
            if select.select([sock], [], [], 0)[0]:  # the server answered: stop sending, read the answer
                break
            sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" if chunked else chunk)
            sent += len(chunk)
        if chunked:
            sock.sendall(b"0\r\n\r\n")
    except OSError:  # the server answered and closed the connection: it stopped reading, as it should
        pass
    response = http.client.HTTPResponse(sock)
    try:
        response.begin()
        status, raw = response.status, response.read()
        headers = dict(response.getheaders())
    finally:
        sock.close()
    return SimpleNamespace(status=status, body=json.loads(raw or b"{}"), headers=headers, sent=sent)


def _body(size: int, chunk: int = MiB):
    block = b"a" * chunk
    for _ in range(size // chunk):
        yield block


def _form_headers(**extra) -> dict[str, str]:
    return {"Content-Type": "application/x-www-form-urlencoded", **extra}


# --- nothing else is reachable without a login -----------------------------------------------------
def _plugin_routes() -> list[tuple[str, str]]:
    """(method, full path) of every route the product's plugins mount, from their own route tables."""
    from fastapi.routing import APIRoute

    from migration_engine.airflow import plugins
    from migration_engine.dashboard.asgi import LazyASGIApp

    routes = []
    for plugin in (plugins.MigrationDashboardPlugin, plugins.MigrationSlackInteractivityPlugin):
        for entry in plugin.fastapi_apps:
            app = entry["app"].app if isinstance(entry["app"], LazyASGIApp) else entry["app"]
            assert app.openapi_url is None and app.docs_url is None and app.redoc_url is None, entry
            for route in app.routes:
                assert isinstance(route, APIRoute), f"{entry['url_prefix']}: unexpected route {route!r}"
                routes += [(method, entry["url_prefix"] + route.path) for method in sorted(route.methods)]
    return routes


def test_every_plugin_route_but_interactivity_needs_a_login(server):
    routes = _plugin_routes()
    assert ("POST", "/slack/interactivity") in routes and ("GET", "/slack/health") in routes
    assert ("GET", "/migration/dashboard") in routes
    token = server.token("admin")
    for method, path in routes:
        if (method, path) == ("POST", "/slack/interactivity"):
            continue
        status, body = server.call(method, path)
        assert status in (401, 403), (method, path, status, str(body)[:300])
        status, body = server.call(method, path, token=token)  # the route exists and answers a logged-in user
        if "{" in path and status == 404:  # a path parameter naming nothing: the handler's own 404, not the router's
            assert not (isinstance(body, dict) and body.get("detail") == "Not Found"), (method, path, body)
            continue
        assert status not in (401, 403, 404, 405), (method, path, status, str(body)[:300])
    for path in ("/slack/docs", "/slack/openapi.json", "/migration/docs", "/migration/openapi.json"):
        assert server.call("GET", path)[0] == 404, path


# --- refusals before the body ------------------------------------------------------------------
def test_requests_are_refused_from_their_headers_before_the_body(server):
    now = str(int(time.time()))
    signed_format = {"X-Slack-Request-Timestamp": now, "X-Slack-Signature": FAKE_SIGNATURE}

    no_signature = _raw(server, _form_headers(**{"Content-Length": "20"}), [b"payload=%7B%7D123456"])
    assert (no_signature.status, no_signature.body["error"]) == (401, "missing_signature")
    wrong_type = _raw(server, {"Content-Type": "application/json", "Content-Length": "2", **signed_format}, [b"{}"])
    assert (wrong_type.status, wrong_type.body["error"]) == (415, "unsupported_media_type")
    malformed = _raw(server, _form_headers(**{"Content-Length": "2", "X-Slack-Request-Timestamp": now,
                                              "X-Slack-Signature": "v0=nothex"}), [b"{}"])
    assert (malformed.status, malformed.body["error"]) == (401, "malformed_signature")

    # an announced 300 MiB: answered before a byte of the body was sent
    announced = _raw(server, _form_headers(**{"Content-Length": str(300 * MiB), **signed_format}))
    assert (announced.status, announced.body["error"]) == (413, "body_too_large")
    assert announced.headers.get("connection") == "close"

    # chunked, no Content-Length: the capped read stops just past 1 MB and answers
    chunked = _raw(server, _form_headers(**signed_format), _body(50 * MiB, 64 * 1024), chunked=True)
    assert (chunked.status, chunked.body["error"]) == (413, "body_too_large"), chunked.body
    assert chunked.sent < 50 * MiB  # the server hung up long before the end

    # well-formed headers and a small body get as far as the signature check
    body = form_body({"type": "block_actions"})
    wrong_secret = _raw(server, {**signed_headers(body, "not-the-secret"), "Content-Length": str(len(body))}, [body])
    assert (wrong_secret.status, wrong_secret.body["error"]) == (401, "bad_signature")
    log = server.output()
    assert "refused request from 127.0.0.1 before reading its body" in log and SECRET not in log


def test_an_oversized_unsigned_body_leaves_memory_and_the_server_alone(server):
    """Issue 14's measurement: a 300 MiB unsigned POST grew the API server by ~513 MiB. Now within +64 MiB,
    announced or chunked, and the server keeps answering."""
    for _ in range(3):  # warm up: the lazy app, the first requests' allocations
        assert server.call("GET", "/api/v2/monitor/health")[0] == 200
    baseline = server.group_rss_bytes()
    assert baseline > 50 * MiB  # measuring the right processes
    peak = [baseline]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], server.group_rss_bytes())
            stop.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        unsigned = _raw(server, _form_headers(**{"Content-Length": str(300 * MiB)}), _body(300 * MiB))
        chunked = _raw(server, _form_headers(**{"X-Slack-Request-Timestamp": str(int(time.time())),
                                                "X-Slack-Signature": FAKE_SIGNATURE}), _body(300 * MiB), chunked=True)
    finally:
        stop.set()
        sampler.join(5)
    assert (unsigned.status, unsigned.body["error"]) == (401, "missing_signature")
    assert (chunked.status, chunked.body["error"]) == (413, "body_too_large")
    grown = max(peak[0], server.group_rss_bytes()) - baseline
    print(f"api-server RSS: baseline {baseline / MiB:.1f} MiB, peak growth {grown / MiB:.1f} MiB")
    assert grown < 64 * MiB, f"API server RSS grew by {grown / MiB:.1f} MiB"
    assert server.call("GET", "/api/v2/monitor/health")[0] == 200
    assert server.call("GET", "/slack/health", token=server.token("admin"))[1]["signing_secret_configured"]


# --- last: locks 127.0.0.1 out of this server for a minute ----------------------------------------
def test_failed_signatures_are_rate_limited_per_source(server):
    from migration_engine.approvals.guard import FAILURES_PER_WINDOW

    answers = []
    for _ in range(FAILURES_PER_WINDOW + 1):
        answers.append(_raw(server, _form_headers(**{"Content-Length": "0"})))
        if answers[-1].status == 429:
            break
    assert answers[-1].status == 429 and len(answers) <= FAILURES_PER_WINDOW + 1, [a.status for a in answers]
    assert {a.status for a in answers[:-1]} == {401}
    # now even a well-formed request from this source is refused before its body is read
    body = form_body({"type": "block_actions"})
    limited = _raw(server, {**signed_headers(body, SECRET), "Content-Length": str(100 * MiB)})
    assert (limited.status, limited.body["error"]) == (429, "rate_limited"), limited.body
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert server.call("GET", "/api/v2/monitor/health")[0] == 200  # the rest of the server is not affected
