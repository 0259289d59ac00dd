"""The Slack interactivity endpoint for migration approvals, served inside the Airflow API server.

``POST /slack/interactivity`` is the Request URL of the Slack app's Interactivity settings
(``https://<airflow-host>/slack/interactivity``). Slack cannot log in to Airflow, so the route has no
Airflow auth; every request must instead carry a valid Slack signature (see
``migration_engine.approvals.interactivity`` for the checks and answers; what they need from
Airflow's metadata DB comes from ``migration_engine.airflow.approvals.airflow_side()``).
``GET /slack/health`` says whether the endpoint is configured (never the secret itself).

Registered by ``migration_engine.airflow.plugins``. Restart the API server after changing this file.
"""

from __future__ import annotations

from fastapi import BackgroundTasks, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

app = FastAPI(title="Migration Slack interactivity", docs_url=None, redoc_url=None, openapi_url=None)


def handle_interaction(body: bytes, headers: dict[str, str], **kwargs):
    """The engine's handler with this process's Airflow side (the tests call it directly too)."""
    from migration_engine.airflow.approvals import airflow_side
    from migration_engine.approvals.interactivity import handle_interaction as handle

    return handle(body, headers, airflow=airflow_side(), **kwargs)


@app.post("/interactivity")
async def interactivity(request: Request, background: BackgroundTasks) -> JSONResponse:
    body = await request.body()
    reply = await run_in_threadpool(handle_interaction, body, dict(request.headers))
    if reply.followups:
        background.add_task(reply.run_followups)  # Slack wants the HTTP answer within 3 s
    return JSONResponse(reply.body, status_code=reply.status)


@app.get("/health")
async def health() -> dict:
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
