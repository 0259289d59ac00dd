"""Slack request signatures: who may talk to the interactivity endpoint at all.

Slack signs every request with the app's signing secret: ``v0=HMAC-SHA256(secret, "v0:{ts}:{body}")``
in ``X-Slack-Signature`` and the Unix time in ``X-Slack-Request-Timestamp``. A request is accepted
only if the signature matches and the timestamp is within 5 minutes of our clock (so a captured
request cannot be replayed later; replays inside the window are caught by ``store.remember_request``).

The secret comes from the Slack Airflow connection's extra ``signing_secret`` or the environment
variable ``SLACK_SIGNING_SECRET``. It is never logged and never part of an error message.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from migration_engine.errors import MigrationError

MAX_AGE_SECONDS = 300
SIGNING_SECRET_ENV = "SLACK_SIGNING_SECRET"
_EXTRA_KEYS = ("signing_secret", "extra__slack__signing_secret")


class RequestRejected(MigrationError):
    """The request is refused before anything is read from it; ``status`` is the HTTP answer."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class SigningSecretMissing(MigrationError):
    """Neither the Slack connection nor the environment provides a signing secret."""


def signing_secret(conn_id: str | None, *, mask: Callable[[str], Any] | None = None) -> str:
    """The signing secret: Slack connection extra ``signing_secret``, else ``$SLACK_SIGNING_SECRET``.

    ``mask`` (the Airflow layer passes Airflow's ``mask_secret``) keeps it out of any log line the
    host process writes, too: defence in depth, not a requirement, so its failure is ignored.
    """
    secret = None
    if conn_id:
        secret = _from_connection(conn_id)
    secret = secret or os.environ.get(SIGNING_SECRET_ENV, "").strip()
    if not secret:
        raise SigningSecretMissing(
            f"no Slack signing secret: set the extra 'signing_secret' on the Airflow connection {conn_id!r} "
            f"or the environment variable {SIGNING_SECRET_ENV} (Slack app -> Basic Information -> Signing Secret)"
        )
    if mask is not None:
        try:
            mask(secret)
        except Exception:  # noqa: BLE001 - masking is defence in depth
            pass
    return secret


def _from_connection(conn_id: str) -> str | None:
    from migration_engine import db

    try:
        extra = db.get_connection(conn_id).extra_dejson or {}
    except Exception:  # noqa: BLE001 - a missing connection just means "use the environment"
        return None
    for key in _EXTRA_KEYS:
        value = extra.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A request header by case-insensitive name (ASGI and WSGI spell them differently)."""
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


@dataclass(frozen=True)
class VerifiedRequest:
    timestamp: int
    signature: str


def verify_request(body: bytes, headers: Mapping[str, str], secret: str, *, now: float | None = None,
                   max_age: int = MAX_AGE_SECONDS) -> VerifiedRequest:
    """Check timestamp freshness and the v0 signature; raise ``RequestRejected`` (401) otherwise."""
    from slack_sdk.signature import SignatureVerifier

    now = time.time() if now is None else now
    raw_ts = header(headers, "X-Slack-Request-Timestamp")
    signature = header(headers, "X-Slack-Signature")
    if not raw_ts or not signature:
        raise RequestRejected(401, "missing_signature",
                              "missing X-Slack-Request-Timestamp or X-Slack-Signature header; "
                              "only signed requests from Slack are accepted")
    try:
        ts = int(raw_ts.strip())
    except ValueError:
        raise RequestRejected(401, "bad_timestamp", f"X-Slack-Request-Timestamp {raw_ts[:40]!r} is not a Unix time") \
            from None
    age = now - ts
    if abs(age) > max_age:
        when = f"{int(age)} s old" if age > 0 else f"{int(-age)} s in the future"
        raise RequestRejected(401, "stale_request",
                              f"request timestamp is {when}; requests more than {max_age} s from this server's "
                              "clock are refused (replay protection; check the server clock if this is unexpected)")

    class _Clock:
        def now(self) -> float:
            return now

    if not SignatureVerifier(secret, clock=_Clock()).is_valid(body, str(ts), signature.strip()):
        raise RequestRejected(401, "bad_signature",
                              "X-Slack-Signature does not match this request (wrong signing secret, or the body "
                              "was changed on the way)")
    return VerifiedRequest(ts, signature.strip())


def sign(body: bytes | str, secret: str, timestamp: int) -> str:
    """The ``X-Slack-Signature`` Slack would send (for tests and the docs' curl example)."""
    from slack_sdk.signature import SignatureVerifier

    return SignatureVerifier(secret).generate_signature(timestamp=str(timestamp), body=body)
