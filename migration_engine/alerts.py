"""Slack alerts: the one place every DAG and engine module pages from (no Airflow imports).

Routing (config section ``slack``): ``warning`` and ``info`` go to ``warning_channel``;
``critical`` goes to ``critical_channel`` and starts with ``oncall_mention``. Messages are Block
Kit (header, text, figures as fields, a context line naming DAG/task/run with a link into the
Airflow UI) plus a plain ``text`` fallback, which is what notifications and screen readers show.

Delivery goes through ``slack_sdk.WebClient`` on the configured Slack connection
(``connections.slack``, read as the Slack provider reads it), with small bounded retries: 429 honours
``Retry-After`` up to a few seconds, 5xx and connection errors back off briefly, and every request
has a short timeout. An alert that cannot be delivered is logged (with its text, so it is still in
the task log) and reported as a failed ``AlertResult``; nothing here raises into the caller - an
outage of Slack must not fail a migration step, and a failure callback must not mask the failure.
The token is never logged: errors are described by status and Slack error code, and anything
that looks like a Slack token is redacted from messages we log.

Deduplication (optional): ``send_alert(..., dedup_key=k, conn=<control DB connection>)`` keeps one
open alert per key in the control schema's ``alerts`` table. While it is open, repeats update the
existing Slack message (occurrence count, latest text and figures) instead of paging again;
``resolve_alert(k, ...)`` marks the message resolved and posts a follow-up in its thread. The key
is serialised with a transaction-scoped advisory lock, so concurrent senders page once.

Task events (``task_alert`` / ``resolve_task_alerts``, called by the Airflow layer's callbacks in
``migration_engine.airflow.callbacks``) deduplicate per task (``task_failure:<dag>.<task>``,
``task_retry:...``) when the control database is reachable (short connect timeout; without it they
page as before); a success resolves the task's open alerts. An alert that Slack never accepted is
recorded: in ``alerts.delivery_error`` when deduplicated, else as an ``alert.undelivered`` entry in
the audit ledger (best effort, never raising). On-call guide: docs/oncall-slack.md.

Module import is cheap: slack_sdk, psycopg2 and the config model load inside functions.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from migration_engine.errors import ConnectionConfigError
from migration_engine.slack_text import esc as _esc
from migration_engine.slack_text import fmt as _fmt
from migration_engine.slack_text import trunc as _trunc
from migration_engine.ui_links import ui_path

if TYPE_CHECKING:
    from slack_sdk import WebClient

    from migration_engine.config import MigrationConfig, Slack

log = logging.getLogger(__name__)

SEVERITIES = ("info", "warning", "critical")
EMOJI = {"info": ":information_source:", "warning": ":warning:", "critical": ":rotating_light:",
         "resolved": ":white_check_mark:"}

# Delivery bounds: a failure callback should finish in seconds even when Slack is down.
SLACK_TIMEOUT_SECONDS = 10
RATE_LIMIT_RETRIES = 2
RATE_LIMIT_MAX_WAIT_SECONDS = 5  # a longer Retry-After gives up instead of blocking the task
SERVER_ERROR_RETRIES = 2
CONNECTION_ERROR_RETRIES = 2
RETRY_BACKOFF_SECONDS = 0.25  # 0.25s, 0.5s (+ up to 25% jitter)

# Slack Block Kit limits (header 150, section text 3000, field 2000, 10 fields per section).
_HEADER_MAX = 150
_SECTION_MAX = 3000
_FIELD_MAX = 500
_FIELDS_PER_SECTION = 10
_MAX_FIGURES = 40
_FALLBACK_MAX = 3000
_EXCEPTION_MAX = 1500

_USER_ID_RE = re.compile(r"^[UW][A-Z0-9]{2,}$")
_TOKEN_RE = re.compile(r"\b(xox[a-z]|xapp)-[A-Za-z0-9-]+")
_BEARER_RE = re.compile(r"(?i)\bbearer\s+\S+")


@dataclass(frozen=True)
class AlertResult:
    """What happened to one alert. Truthy when Slack accepted the message."""

    ok: bool
    severity: str
    channel: str | None  # where it was routed (name as configured)
    action: str  # posted | updated | resolved | noop | failed
    ts: str | None = None  # Slack message ts
    channel_id: str | None = None  # the channel id Slack answered with
    error: str | None = None
    dedup_key: str | None = None
    occurrences: int | None = None

    def __bool__(self) -> bool:
        return self.ok


# --- formatting ----------------------------------------------------------------------------
def redact(text: str) -> str:
    """Remove anything that looks like a Slack token or a bearer credential."""
    return _BEARER_RE.sub("Bearer ***", _TOKEN_RE.sub(lambda m: f"{m.group(1)}-***", text))


def airflow_url(base_url: str | None, dag_id: str | None, run_id: str | None = None,
                task_id: str | None = None, map_index: int | None = None) -> str | None:
    """``{base}/dags/{dag_id}/runs/{run_id}[/tasks/{task_id}[/mapped/{i}]]`` (Airflow 3 UI)."""
    if not base_url or not dag_id:
        return None
    return base_url.rstrip("/") + ui_path(dag_id, run_id, task_id, map_index)


def _link(url: str, label: str) -> str:
    return f"<{url.replace('|', '%7C').replace('>', '%3E').replace('<', '%3C')}|{_esc(label)}>"


def build_message(
    severity: str,
    title: str,
    text: str,
    *,
    slack: Slack | None = None,
    figures: Mapping[str, Any] | None = None,
    dag_id: str | None = None,
    task_id: str | None = None,
    run_id: str | None = None,
    map_index: int | None = None,
    link: str | None = None,
    link_text: str = "Details",
    notes: list[str] | None = None,
    resolved: bool = False,
    mentions: list[str] | None = None,
) -> tuple[str, list[dict[str, Any]]]:
    """The fallback text and Block Kit blocks of one alert (no I/O; used by send and update).

    ``mentions``: Slack user ids (``U012ABCDEF``) to notify, e.g. the approvers an approval reminder
    is for; anything that is not a user id is dropped (text is escaped, so it cannot mention).
    """
    if slack is None:
        from migration_engine.config import Slack

        slack = Slack()
    severity = severity if severity in SEVERITIES else "critical"
    label = "RESOLVED" if resolved else severity.upper()
    emoji = EMOJI["resolved" if resolved else severity]
    mention = slack.oncall_mention.strip() if severity == "critical" and not resolved else ""
    if mentions and not resolved:
        users = " ".join(f"<@{u}>" for u in mentions if isinstance(u, str) and _USER_ID_RE.match(u))
        mention = " ".join(filter(None, [mention, users]))
    run_url = airflow_url(slack.airflow_base_url, dag_id, run_id, task_id, map_index)
    body = _esc(text).strip() or "_(no details)_"

    blocks: list[dict[str, Any]] = [
        {"type": "header",
         "text": {"type": "plain_text", "text": _trunc(" ".join(f"{emoji} {label}: {title}".split()), _HEADER_MAX),
                  "emoji": True}},
        {"type": "section",
         "text": {"type": "mrkdwn", "text": _trunc(f"{mention} {body}" if mention else body, _SECTION_MAX)}},
    ]
    items = list((figures or {}).items())[:_MAX_FIGURES]
    for start in range(0, len(items), _FIELDS_PER_SECTION):
        fields = [{"type": "mrkdwn", "text": _trunc(f"*{_esc(k)}*\n{_esc(_fmt(v))}", _FIELD_MAX)}
                  for k, v in items[start:start + _FIELDS_PER_SECTION]]
        blocks.append({"type": "section", "fields": fields})

    where = [f"{name} `{_esc(value)}`" for name, value in (("DAG", dag_id), ("task", task_id), ("run", run_id))
             if value]
    elements = [" · ".join(where)] if where else []
    if run_url:
        elements.append(_link(run_url, "Open in Airflow"))
    if link:
        elements.append(_link(link, link_text))
    elements.extend(_esc(n) for n in notes or [])
    if elements:
        blocks.append({"type": "context",
                       "elements": [{"type": "mrkdwn", "text": _trunc(e, _SECTION_MAX)} for e in elements[:10]]})

    fallback = f"{emoji} [{label}] " + (f"{mention} " if mention else "") + f"{_esc(title)}: {body}"
    if run_url:
        fallback += f" ({run_url})"
    return _trunc(fallback, _FALLBACK_MAX), blocks


# --- configuration -------------------------------------------------------------------------
@dataclass(frozen=True)
class _Settings:
    slack: Slack
    conn_id: str
    schema: str


def _settings(cfg: MigrationConfig | None) -> _Settings:
    from migration_engine.config import Connections, MigrationConfig, Slack, load_config

    if cfg is None:
        try:
            cfg = load_config()
        except Exception as exc:  # noqa: BLE001 - a broken config must not stop the page
            log.warning("alerts: migration config unavailable (%s); using default Slack settings",
                        redact(str(exc))[:500])
            # The config model's own defaults (no second copy of them here).
            return _Settings(Slack(), Connections.model_fields["slack"].default,
                             MigrationConfig.model_fields["control_schema"].default)
    return _Settings(cfg.slack, cfg.connections.slack, cfg.control_schema)


def route(severity: str, slack: Slack) -> str:
    """The channel for a severity (critical -> critical_channel, else warning_channel)."""
    return slack.critical_channel if severity == "critical" else slack.warning_channel


def _severity(severity: Any) -> str:
    sev = str(severity).lower()
    if sev not in SEVERITIES:
        log.error("alerts: unknown severity %r; sending as critical", severity)
        return "critical"
    return sev


# --- Slack delivery ------------------------------------------------------------------------
def retry_handlers() -> list:
    """slack_sdk retry handlers with small bounded counts (fresh instances per client)."""
    from slack_sdk.http_retry import BackoffRetryIntervalCalculator, Jitter
    from slack_sdk.http_retry.builtin_handlers import (
        ConnectionErrorRetryHandler,
        RateLimitErrorRetryHandler,
        ServerErrorRetryHandler,
    )

    class SmallJitter(Jitter):
        def recalculate(self, duration: float) -> float:
            import random

            return duration * (1 + random.random() / 4)

    class BoundedRateLimitRetryHandler(RateLimitErrorRetryHandler):
        """Honour Retry-After, but give up rather than wait longer than RATE_LIMIT_MAX_WAIT_SECONDS."""

        def _can_retry(self, *, state, request, response=None, error=None) -> bool:
            if not super()._can_retry(state=state, request=request, response=response, error=error):
                return False
            wait = 1.0
            for key, value in (response.headers or {}).items():
                if key.lower() == "retry-after":
                    raw = value[0] if isinstance(value, (list, tuple)) else value
                    try:
                        wait = float(raw)
                    except (TypeError, ValueError):
                        wait = 1.0
            if wait > RATE_LIMIT_MAX_WAIT_SECONDS:
                log.warning("alerts: Slack rate limit asks to wait %ss; not retrying", wait)
                return False
            return True

    class AnyServerErrorRetryHandler(ServerErrorRetryHandler):
        """Also retry 502/504 (proxies and load balancers), not only 500/503."""

        def _can_retry(self, *, state, request, response=None, error=None) -> bool:
            return response is not None and response.status_code in (500, 502, 503, 504)

    backoff = BackoffRetryIntervalCalculator(backoff_factor=RETRY_BACKOFF_SECONDS, jitter=SmallJitter())
    return [
        BoundedRateLimitRetryHandler(max_retry_count=RATE_LIMIT_RETRIES),
        AnyServerErrorRetryHandler(max_retry_count=SERVER_ERROR_RETRIES, interval_calculator=backoff),
        ConnectionErrorRetryHandler(max_retry_count=CONNECTION_ERROR_RETRIES, interval_calculator=backoff),
    ]


class SlackConnectionError(ConnectionConfigError):
    """The Slack connection has no bot token."""


def slack_client(conn_id: str) -> WebClient:
    """A ``slack_sdk.WebClient`` for the Slack connection ``conn_id``, with bounded retries/timeout.

    The connection is read like the Slack provider's hook reads it (type ``slack``: the bot token in
    the password; extras ``base_url`` and ``proxy``, also as ``extra__slack__<key>``), through the
    one connection lookup of the product (``db.get_connection``), so this module imports
    neither Airflow nor the provider.
    """
    from slack_sdk import WebClient

    from migration_engine import db

    conn = db.get_connection(conn_id)
    if not conn.password:
        raise SlackConnectionError(f"Connection ID {conn_id!r} does not contain password (Slack API Token).")
    extra = conn.extra_dejson or {}
    kwargs: dict[str, Any] = {"token": conn.password, "timeout": SLACK_TIMEOUT_SECONDS,
                              "retry_handlers": retry_handlers()}
    for key in ("base_url", "proxy"):
        value = extra.get(key) or extra.get(f"extra__slack__{key}")
        if value:
            kwargs[key] = value
    return WebClient(**kwargs)


def describe_error(exc: BaseException) -> str:
    """A log-safe description: Slack status and error code, never request headers or the token."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if status is not None:
        data = getattr(response, "data", None)
        code = data.get("error") if isinstance(data, dict) else None
        return f"Slack API error (HTTP {status}, error={code or 'n/a'})"
    return _trunc(redact(f"{type(exc).__name__}: {exc}"), 500)


@dataclass(frozen=True)
class _Delivery:
    ok: bool
    channel_id: str | None = None
    ts: str | None = None
    error: str | None = None
    code: str | None = None  # Slack's error code ("channel_not_found", "invalid_blocks", ...)


# Slack refuses a message whose blocks it cannot parse; the plain text is still worth delivering.
_BLOCK_ERRORS = ("invalid_blocks", "invalid_blocks_format", "invalid_arguments", "msg_too_long")


def _call(client_box: dict, conn_id: str, method: str, **kwargs: Any) -> _Delivery:
    """One Slack Web API call; never raises. ``client_box`` caches the client per operation."""
    try:
        if "client" not in client_box:
            client_box["client"] = slack_client(conn_id)
        data = getattr(client_box["client"], method)(**kwargs).data
        data = data if isinstance(data, dict) else {}
        return _Delivery(True, data.get("channel"), data.get("ts"))
    except Exception as exc:  # noqa: BLE001 - Slack trouble is reported, never raised
        data = getattr(getattr(exc, "response", None), "data", None)
        code = data.get("error") if isinstance(data, dict) else None
        return _Delivery(False, error=describe_error(exc), code=code)


def _post(box: dict, conn_id: str, channel: str, text: str, blocks: list | None,
          thread_ts: str | None = None) -> _Delivery:
    kwargs: dict[str, Any] = {"channel": channel, "text": text, "unfurl_links": False, "unfurl_media": False}
    if blocks:
        kwargs["blocks"] = blocks
    if thread_ts:
        kwargs["thread_ts"] = thread_ts
    delivery = _call(box, conn_id, "chat_postMessage", **kwargs)
    if blocks and delivery.code in _BLOCK_ERRORS:
        log.warning("alerts: Slack rejected the blocks (%s); sending the plain text", delivery.code)
        kwargs.pop("blocks")
        delivery = _call(box, conn_id, "chat_postMessage", **kwargs)
    return delivery


def _update(box: dict, conn_id: str, channel_id: str, ts: str, text: str, blocks: list) -> _Delivery:
    delivery = _call(box, conn_id, "chat_update", channel=channel_id, ts=ts, text=text, blocks=blocks)
    if delivery.code in _BLOCK_ERRORS:
        log.warning("alerts: Slack rejected the blocks (%s); updating with the plain text", delivery.code)
        delivery = _call(box, conn_id, "chat_update", channel=channel_id, ts=ts, text=text, blocks=[])
    return delivery


def _log_undelivered(severity: str, channel: str | None, title: str, text: str, error: str | None) -> None:
    log.error("ALERT NOT DELIVERED to Slack [%s] %s: %s - %s (%s)", severity, channel, redact(title),
              _trunc(redact(text), 2000), error)


# --- public API ----------------------------------------------------------------------------
def send_alert(
    severity: str,
    title: str,
    text: str,
    *,
    figures: Mapping[str, Any] | None = None,
    dag_id: str | None = None,
    task_id: str | None = None,
    run_id: str | None = None,
    link: str | None = None,
    cfg: MigrationConfig | None = None,
    channel: str | None = None,
    map_index: int | None = None,
    link_text: str = "Details",
    dedup_key: str | None = None,
    conn: Any = None,
    schema: str | None = None,
    mentions: list[str] | None = None,
    conditions: list[str] | None = None,
) -> AlertResult:
    """Post one alert to Slack; never raises.

    ``severity``: info | warning (warning channel) or critical (critical channel + on-call mention).
    ``figures`` become fields (the numbers behind the decision); ``dag_id``/``run_id``/``task_id``
    give the context line and the link into the Airflow UI; ``link`` adds one more link.
    ``channel`` overrides the routing. With ``dedup_key`` and ``conn`` (a psycopg2 connection to the
    control database; committed by this call) repeats of an open alert update its message instead
    of paging again; ``schema`` defaults to the config's ``control_schema``. Pass a connection with
    no transaction of yours in progress: this call commits it (or rolls it back on a DB error).
    ``conditions`` (with ``dedup_key``): the gates this alert reports (their ``gate_results`` names);
    a later passing evaluation of all of them resolves it (:func:`resolve_cleared`).
    """
    sev = "critical"
    try:
        sev = _severity(severity)
        settings = _settings(cfg)
        target = channel or route(sev, settings.slack)
        render = dict(figures=figures, dag_id=dag_id, task_id=task_id, run_id=run_id, map_index=map_index,
                      link=link, link_text=link_text, mentions=mentions)
        if dedup_key and conn is not None:
            return _send_dedup(sev, title, text, target, settings, dedup_key, conn, schema or settings.schema,
                               render, conditions)
        if dedup_key:
            log.warning("alerts: dedup_key %r given without a control DB connection; not deduplicating",
                        dedup_key)
        fallback, blocks = build_message(sev, title, text, slack=settings.slack, **render)
        delivery = _post({}, settings.conn_id, target, fallback, blocks)
        result = _result(sev, target, "posted", delivery, dedup_key, title, text)
        if not result.ok:
            _record_undelivered(cfg, sev, target, title, text, result.error,
                                {"dag_id": dag_id, "task_id": task_id, "run_id": run_id, "figures": figures})
        return result
    except Exception as exc:  # noqa: BLE001 - alerting must never fail the caller
        err = describe_error(exc)
        _log_undelivered(sev, channel, str(title), str(text), err)
        return AlertResult(False, sev, channel, "failed", error=err, dedup_key=dedup_key)


def _result(sev: str, target: str | None, action: str, delivery: _Delivery, dedup_key: str | None,
            title: str, text: str, occurrences: int | None = None) -> AlertResult:
    if delivery.ok:
        log.info("alert sent to %s [%s] %s (%s)", target, sev, redact(title), action)
        return AlertResult(True, sev, target, action, delivery.ts, delivery.channel_id,
                           dedup_key=dedup_key, occurrences=occurrences)
    _log_undelivered(sev, target, title, text, delivery.error)
    return AlertResult(False, sev, target, "failed", error=delivery.error, dedup_key=dedup_key,
                       occurrences=occurrences)


# --- the control database (dedup state, undelivered alerts) --------------------------------
CONTROL_CONNECT_TIMEOUT_SECONDS = 3


def control_connection(cfg: MigrationConfig | None = None):
    """A psycopg2 connection to the control database with a short connect timeout, or ``None``.

    For callbacks and failure records: they must not hang on an unreachable database, and a
    missing connection only means "no dedup / no record", never an error for the caller.
    """
    try:
        from migration_engine import db
        from migration_engine.config import load_config

        cfg = cfg or load_config()
        return db.connect(cfg.connections.legacy, application_name="migration-alerts",
                          connect_timeout=CONTROL_CONNECT_TIMEOUT_SECONDS)
    except Exception as exc:  # noqa: BLE001 - no control DB: alert without it
        log.debug("alerts: no control database connection (%s)", describe_error(exc))
        return None


def _record_undelivered(cfg: MigrationConfig | None, sev: str, channel: str | None, title: str, text: str,
                        error: str | None, context: dict[str, Any]) -> None:
    """Append an ``alert.undelivered`` entry to the audit ledger (best effort, never raises).

    Deduplicated alerts keep their delivery error in the ``alerts`` table instead; this covers the
    rest, so an alert Slack never showed is still on record next to the migration's other events.
    """
    conn = control_connection(cfg)
    if conn is None:
        return
    try:
        from migration_engine import control

        schema = _settings(cfg).schema
        if not control.control_schema_exists(conn, schema):
            return
        details = {"severity": sev, "channel": channel, "error": error, "text": _trunc(redact(str(text)), 2000),
                   **{k: v for k, v in context.items() if v is not None}}
        control.audit(conn, schema, actor="alerts", action="alert.undelivered",
                      target=_trunc(redact(str(title)), 200), details=json.loads(json.dumps(details, default=str)),
                      reason=error or "")
    except Exception as exc:  # noqa: BLE001
        log.warning("alerts: undelivered alert not recorded in the ledger: %s", describe_error(exc))
    finally:
        try:
            conn.close()
        except Exception:  # noqa: BLE001
            pass


# --- deduplication -------------------------------------------------------------------------
@dataclass(frozen=True)
class _AlertRow:
    status: str
    severity: str
    channel: str | None
    slack_ts: str | None
    title: str
    last_text: str
    occurrences: int
    first_seen: datetime


@contextmanager
def _transaction(conn) -> Iterator[None]:
    """Run in one transaction on ``conn`` (committed on success); restores autocommit after."""
    autocommit = bool(getattr(conn, "autocommit", False))
    if autocommit:
        conn.autocommit = False  # the advisory lock is transaction-scoped
    try:
        yield
        conn.commit()
    except BaseException:
        try:
            conn.rollback()
        except Exception:  # noqa: BLE001 - the original error matters, not the rollback's
            pass
        raise
    finally:
        if autocommit:
            try:
                conn.autocommit = True
            except Exception:  # noqa: BLE001
                pass


def _lock_and_get(conn, schema: str, dedup_key: str) -> _AlertRow | None:
    from migration_engine import sqlfiles

    with conn.cursor() as cur:
        sqlfiles.run(cur, "alerts/lock.sql", params={"dedup_key": dedup_key})
        sqlfiles.run(cur, "alerts/get.sql", {"schema": schema}, {"dedup_key": dedup_key})
        row = cur.fetchone()
    return _AlertRow(*row) if row else None


def _seen_note(occurrences: int, first_seen: datetime | None) -> str:
    now = datetime.now(UTC)
    first = (first_seen or now).astimezone(UTC)
    return (f"Seen {occurrences} times since {first:%Y-%m-%d %H:%M} UTC; "
            f"last {now:%Y-%m-%d %H:%M:%S} UTC")


def _send_dedup(sev: str, title: str, text: str, target: str, settings: _Settings, dedup_key: str, conn,
                schema: str, render: dict, conditions: list[str] | None = None) -> AlertResult:
    from migration_engine import sqlfiles

    box: dict = {}
    delivery: _Delivery | None = None
    action = "posted"
    occurrences = 1
    try:
        with _transaction(conn):
            row = _lock_and_get(conn, schema, dedup_key)
            is_open = row is not None and row.status == "open"
            occurrences = row.occurrences + 1 if is_open else 1
            first_seen = row.first_seen if is_open else None
            notes = [_seen_note(occurrences, first_seen)] if occurrences > 1 else []
            fallback, blocks = build_message(sev, title, text, slack=settings.slack, notes=notes, **render)
            channel_id, ts = None, None
            same_route = is_open and route(row.severity, settings.slack) == route(sev, settings.slack)
            if same_route and row.channel and row.slack_ts:
                delivery = _update(box, settings.conn_id, row.channel, row.slack_ts, fallback, blocks)
                if delivery.ok:
                    action, channel_id, ts = "updated", row.channel, row.slack_ts
                else:
                    log.warning("alerts: could not update the open alert %r (%s); posting a new message",
                                dedup_key, delivery.error)
            if action != "updated":
                delivery = _post(box, settings.conn_id, target, fallback, blocks)
                channel_id, ts = delivery.channel_id, delivery.ts
                if not delivery.ok and is_open:  # keep pointing at the message that exists
                    channel_id, ts = row.channel, row.slack_ts
            with conn.cursor() as cur:
                sqlfiles.run(
                    cur, "alerts/upsert_open.sql", {"schema": schema},
                    {"dedup_key": dedup_key, "severity": sev, "channel": channel_id, "slack_ts": ts,
                     "title": title[:1000], "last_text": text[:10000], "occurrences": occurrences,
                     "delivery_error": None if delivery.ok else delivery.error, "first_seen": first_seen,
                     "conditions": json.dumps(sorted(set(conditions))) if conditions else None},
                )
    except Exception as exc:  # noqa: BLE001 - a control-DB problem must not swallow the page
        log.warning("alerts: dedup state for %r unavailable (%s); sending without deduplication",
                    dedup_key, describe_error(exc))
        if delivery is None:
            fallback, blocks = build_message(sev, title, text, slack=settings.slack, **render)
            delivery = _post(box, settings.conn_id, target, fallback, blocks)
            action = "posted"
    return _result(sev, target, action, delivery, dedup_key, title, text, occurrences)


def resolve_alert(
    dedup_key: str,
    text: str = "",
    *,
    conn: Any,
    schema: str | None = None,
    cfg: MigrationConfig | None = None,
) -> AlertResult:
    """Close an open alert: mark its Slack message resolved and reply in its thread; never raises.

    No open alert under the key -> ``action="noop"`` (ok). ``conn`` is a psycopg2 connection to the
    control database; this call commits.
    """
    sev = "info"
    try:
        from migration_engine import sqlfiles

        settings = _settings(cfg)
        schema = schema or settings.schema
        box: dict = {}
        with _transaction(conn):
            row = _lock_and_get(conn, schema, dedup_key)
            if row is None or row.status != "open":
                return AlertResult(True, sev, None, "noop", dedup_key=dedup_key)
            sev = row.severity
            note = f"Resolved at {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC after {row.occurrences} occurrence(s)"
            reply_text = f"{EMOJI['resolved']} Resolved: {_esc(row.title)}" + (f" - {_esc(text)}" if text else "")
            if row.channel and row.slack_ts:
                fallback, blocks = build_message(sev, row.title, row.last_text, slack=settings.slack,
                                                 notes=[note] + ([text] if text else []), resolved=True)
                updated = _update(box, settings.conn_id, row.channel, row.slack_ts, fallback, blocks)
                delivery = _post(box, settings.conn_id, row.channel, reply_text, None, thread_ts=row.slack_ts)
                if not updated.ok:
                    log.warning("alerts: could not mark %r resolved in Slack (%s)", dedup_key, updated.error)
                target = row.channel
            else:  # the alert itself never reached Slack: say so where it would have gone
                target = route(sev, settings.slack)
                fallback, blocks = build_message(
                    sev, row.title, (text + "\n" if text else "") + "(The original alert was not delivered.)",
                    slack=settings.slack, notes=[note], resolved=True)
                delivery = _post(box, settings.conn_id, target, fallback, blocks)
            with conn.cursor() as cur:
                sqlfiles.run(cur, "alerts/resolve.sql", {"schema": schema},
                             {"dedup_key": dedup_key, "delivery_error": None if delivery.ok else delivery.error})
        return _result(sev, target, "resolved", delivery, dedup_key, f"resolved: {row.title}", text,
                       row.occurrences)
    except Exception as exc:  # noqa: BLE001 - alerting must never fail the caller
        err = describe_error(exc)
        log.error("alerts: could not resolve alert %r: %s", dedup_key, err)
        return AlertResult(False, sev, None, "failed", error=err, dedup_key=dedup_key)


# --- task events (the Airflow layer's callbacks read the context and call these) ---------
def callback_dedup_key(kind: str, dag_id: Any, task_id: Any, map_index: Any = None) -> str | None:
    """``task_failure:<dag>.<task>[<i>]``: one open alert per task, so a failure that persists
    (every retry, every scheduled run) updates its message instead of paging again."""
    if not dag_id:
        return None
    key = f"{kind}:{dag_id}" + (f".{task_id}" if task_id else "")
    if isinstance(map_index, int) and map_index >= 0:
        key += f"[{map_index}]"
    return key


def exception_text(exc: Any) -> str | None:
    if exc is None or exc == "":
        return None
    text = f"{type(exc).__name__}: {exc}" if isinstance(exc, BaseException) else str(exc)
    return _trunc(redact(text), _EXCEPTION_MAX)


def task_alert(severity: str, verb: str, kind: str, *, dag_id: Any, task_id: Any = None, run_id: Any = None,
               try_number: Any = None, max_tries: Any = None, map_index: Any = None, error: Any = None,
               log_url: Any = None, cfg: MigrationConfig | None = None) -> AlertResult:
    """The alert for a task (or DAG run) event, deduplicated per task when the control DB answers.

    ``verb``: "failed", "is retrying"; ``kind``: the dedup family (``task_failure``, ``task_retry``);
    ``error``: the exception (or reason), shown redacted and truncated.
    """
    text_error = exception_text(error)
    if task_id:
        title = f"Task {verb}: {dag_id}.{task_id}"
        what = f"Task `{task_id}` in DAG `{dag_id}` {verb}"
    else:
        title = f"DAG run {verb}: {dag_id}"
        what = f"DAG `{dag_id}` run {verb}"
    if isinstance(try_number, int):
        what += f" on try {try_number}" + (f" of {max_tries + 1}" if isinstance(max_tries, int) else "")
    text = what + "." + (f"\n```{text_error}```" if text_error else "")
    figures: dict[str, Any] = {}
    if isinstance(try_number, int):
        figures["try"] = try_number
    if isinstance(map_index, int) and map_index >= 0:
        figures["map index"] = map_index
    if isinstance(error, BaseException):
        figures["exception"] = type(error).__name__
    key = callback_dedup_key(kind, dag_id, task_id, map_index)
    conn = control_connection(cfg) if key else None
    try:
        return send_alert(severity, title, text, figures=figures or None, dag_id=dag_id, task_id=task_id,
                          run_id=run_id, map_index=map_index if isinstance(map_index, int) else None,
                          link=log_url if isinstance(log_url, str) else None, link_text="Task log", cfg=cfg,
                          dedup_key=key if conn is not None else None, conn=conn)
    finally:
        if conn is not None:
            conn.close()


def resolve_task_alerts(dag_id: Any, task_id: Any, map_index: Any = None, run_id: Any = None) -> None:
    """Resolve the task's open failure/retry alerts (a "resolved" reply in their thread). Quiet and
    cheap when there is nothing to resolve or no control DB."""
    from migration_engine import control

    keys = [k for k in (callback_dedup_key(kind, dag_id, task_id, map_index)
                        for kind in ("task_failure", "task_retry")) if k]
    if not keys:
        return
    settings = _settings(None)
    conn = control_connection()
    if conn is None:
        return
    try:
        if not control.control_schema_exists(conn, settings.schema):
            return
        conn.rollback()
        for key in keys:
            resolve_alert(key, f"{dag_id}.{task_id} succeeded in run {run_id}", conn=conn)
    finally:
        conn.close()


# --- conditions that cleared ---------------------------------------------------------------
def resolve_cleared(gate: str, *, conn: Any, schema: str, cfg: MigrationConfig | None = None,
                    text: str = "") -> list[str]:
    """Resolve every open alert that reported ``gate`` once all of its conditions pass again.

    Called after a passing evaluation of ``gate`` (``gates.runner``): an alert that reported several
    gates (the phase-5 checklist page) resolves when the latest evaluation of each of them - in any
    run - is ``passed``. Returns the keys resolved; never raises.
    """
    from migration_engine import sqlfiles

    try:
        with conn.cursor() as cur:
            sqlfiles.run(cur, "alerts/open_with_condition.sql", {"schema": schema}, {"gate": gate})
            rows = cur.fetchall()
        conn.commit()
    except Exception as exc:  # noqa: BLE001 - resolving is best effort; the gate's decision stands
        try:
            conn.rollback()
        except Exception:  # noqa: BLE001
            pass
        log.warning("alerts: open alerts for gate %s unavailable: %s", gate, describe_error(exc))
        return []
    resolved = []
    for key, pending in rows:
        if pending:  # other conditions of the alert are not passing yet
            log.info("alerts: %s: %s passes now; still waiting for %s", key, gate, ", ".join(pending))
            continue
        res = resolve_alert(key, text or f"cleared: {gate} passes again", conn=conn, schema=schema, cfg=cfg)
        if res.action == "resolved":
            resolved.append(key)
    return resolved
