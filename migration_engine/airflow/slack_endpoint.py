"""The Slack interactivity endpoint for migration approvals, served inside the Airflow API server.

``POST /slack/interactivity`` is the Request URL of the Slack app's Interactivity settings
(``https://<airflow-host>/slack/interactivity``). Slack cannot log in to Airflow, so the route has no
Airflow auth; every request must instead carry a valid Slack signature (see
``migration_engine.approvals.interactivity`` for the checks and answers; what they need from
Airflow's metadata DB comes from ``migration_engine.airflow.approvals.airflow_side()``).
``GET /slack/health`` says whether the endpoint is configured (never the secret itself); it needs an
Airflow login like everything else under the plugins: ``/slack/interactivity`` is the one route an
anonymous caller reaches, and it refuses before reading the body unless the source, ``Content-Type``,
signature headers and ``Content-Length`` pass (``migration_engine.approvals.guard``), then reads at
most ``MAX_BODY_BYTES``.

Registered by ``migration_engine.airflow.plugins``. Restart the API server after changing this file.
"""

from __future__ import annotations

from airflow.api_fastapi.core_api.security import GetUserDep
from fastapi import BackgroundTasks, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from migration_engine.approvals import guard

app = FastAPI(title="Migration Slack interactivity", docs_url=None, redoc_url=None, openapi_url=None)
limiter = guard.FailureLimiter()
_SIGNATURE_FAILURES = {"missing_signature", "bad_timestamp", "malformed_signature", "stale_request", "bad_signature"}


def handle_interaction(body: bytes, headers: dict[str, str], **kwargs):
    """The engine's handler with this process's Airflow side (the tests call it directly too)."""
    from migration_engine.airflow.approvals import airflow_side
    from migration_engine.approvals.interactivity import handle_interaction as handle

    return handle(body, headers, airflow=airflow_side(), **kwargs)


def _source(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _refuse(refusal: guard.Refusal, source: str) -> JSONResponse:
    """Answer without reading (the rest of) the body, and close the connection so it is not read either."""
    import logging

    if refusal.counts_as_failure:
        limiter.failed(source)
    logging.getLogger(__name__).warning("slack interactivity: refused request from %s before reading its body: %s",
                                        source, refusal.message)
    headers = {"Connection": "close"}
    if refusal.status == 429:
        headers["Retry-After"] = str(limiter.retry_after(source) or 1)
    return JSONResponse(refusal.body(), status_code=refusal.status, headers=headers)


@app.post("/interactivity")
async def interactivity(request: Request, background: BackgroundTasks) -> JSONResponse:
    # Nothing of the body is read until the source, the headers and the announced length pass
    # (migration_engine.approvals.guard); then it is read with a hard cap, chunked bodies too.
    source = _source(request)
    refusal = limiter.refusal(source) or guard.check_headers(request.headers)
    if refusal is not None:
        return _refuse(refusal, source)
    try:
        body = await guard.read_capped(request.stream())
    except guard.BodyTooLarge:
        return _refuse(guard.too_large(), source)
    reply = await run_in_threadpool(handle_interaction, body, dict(request.headers))
    if reply.status == 401 and reply.body.get("error") in _SIGNATURE_FAILURES:
        limiter.failed(source)
    if reply.followups:
        background.add_task(reply.run_followups)  # Slack wants the HTTP answer within 3 s
    return JSONResponse(reply.body, status_code=reply.status)


@app.get("/health")
def health(user: GetUserDep) -> dict:
    """Whether the endpoint is configured - for a logged-in Airflow user only (the problem text names
    connections and settings an anonymous caller has no business knowing)."""
    from airflow.sdk.log import mask_secret

    from migration_engine.approvals import signing
    from migration_engine.config import load_config

    try:
        cfg = load_config()
        signing.signing_secret(cfg.connections.slack, mask=mask_secret)
        configured, problem = True, None
    except Exception as exc:  # noqa: BLE001 - report, don't fail
        configured, problem = False, str(exc)
    return {"ok": configured, "signing_secret_configured": configured, "problem": problem}


def create_app() -> FastAPI:
    """The factory ``LazyASGIApp`` calls on the first request."""
    return app
