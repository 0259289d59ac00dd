"""What ``POST /slack/interactivity`` checks before it reads a single byte of the body (no Airflow, no I/O).

The endpoint must be reachable without an Airflow login (Slack cannot log in), inside the process that
serves the Airflow UI and REST API. So an unauthenticated request must cost almost nothing: the
checks here look only at the source address and the headers, and the body is then read with a hard
cap (``read_capped``) - a body over ``MAX_BODY_BYTES`` is refused as soon as the cap is passed, whether
it announced its length or came chunked without ``Content-Length``.

In order (the first that fails answers; every refusal closes the connection):

1. the source has not failed signature checks too often (``FailureLimiter``)  no -> 429 ``rate_limited``
2. ``Content-Type`` is ``application/x-www-form-urlencoded`` (what Slack sends)  no -> 415 ``unsupported_media_type``
3. ``X-Slack-Request-Timestamp`` and ``X-Slack-Signature`` present and well-formed
   (digits; ``v0=`` + 64 hex), timestamp within 5 minutes                      no -> 401 (counts as a failure)
4. ``Content-Length``, when given, a number not over the cap                   no -> 400 / 413 (a failure too)

Then the body (capped) and the signature check proper (``signing.verify_request``), whose failure the
layer also reports to the limiter.
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

from migration_engine.approvals.payload import MAX_BODY_BYTES
from migration_engine.approvals.signing import MAX_AGE_SECONDS, header

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
_SIGNATURE_RE = re.compile(r"^v0=[0-9a-f]{64}$")
_TIMESTAMP_RE = re.compile(r"^[0-9]{1,12}$")
_LENGTH_RE = re.compile(r"^[0-9]{1,19}$")

FAILURES_PER_WINDOW = 20  # failed signature checks a source may have ...
FAILURE_WINDOW_SECONDS = 60  # ... within this many seconds before it is refused outright
MAX_TRACKED_SOURCES = 10_000  # memory bound of the limiter: the least recently failing sources are forgotten


@dataclass(frozen=True)
class Refusal:
    status: int
    code: str
    message: str
    counts_as_failure: bool = True  # a failed signature check (for the limiter)

    def body(self) -> dict:
        return {"ok": False, "error": self.code, "message": self.message}


def check_headers(headers: Mapping[str, str], *, now: float | None = None, max_body: int = MAX_BODY_BYTES,
                  max_age: int = MAX_AGE_SECONDS) -> Refusal | None:
    """The first reason to refuse this request from its headers alone, else None."""
    now = time.time() if now is None else now
    content_type = (header(headers, "Content-Type") or "").split(";", 1)[0].strip().lower()
    if content_type != FORM_CONTENT_TYPE:
        return Refusal(415, "unsupported_media_type",
                       f"Content-Type must be {FORM_CONTENT_TYPE} (as Slack sends interactivity requests), got "
                       f"{content_type[:60] or 'none'!r}", counts_as_failure=False)
    raw_ts = (header(headers, "X-Slack-Request-Timestamp") or "").strip()
    signature = (header(headers, "X-Slack-Signature") or "").strip()
    if not raw_ts or not signature:
        return Refusal(401, "missing_signature", "missing X-Slack-Request-Timestamp or X-Slack-Signature header; "
                                                 "only signed requests from Slack are accepted")
    if not _TIMESTAMP_RE.match(raw_ts):
        return Refusal(401, "bad_timestamp", f"X-Slack-Request-Timestamp {raw_ts[:40]!r} is not a Unix time")
    if not _SIGNATURE_RE.match(signature):
        return Refusal(401, "malformed_signature",
                       "X-Slack-Signature is not of the form v0=<64 hex digits>; only signed requests from Slack "
                       "are accepted")
    age = now - int(raw_ts)
    if abs(age) > max_age:
        when = f"{int(age)} s old" if age > 0 else f"{int(-age)} s in the future"
        return Refusal(401, "stale_request",
                       f"request timestamp is {when}; requests more than {max_age} s from this server's clock are "
                       "refused (replay protection; check the server clock if this is unexpected)")
    length = header(headers, "Content-Length")
    if length is not None:
        length = length.strip()
        if not _LENGTH_RE.match(length):
            return Refusal(400, "bad_content_length", f"Content-Length {length[:40]!r} is not a number")
        if int(length) > max_body:
            return Refusal(413, "body_too_large", f"request body of {int(length)} bytes is over the {max_body}-byte "
                                                  "cap; Slack interactivity payloads are far smaller")
    return None


class BodyTooLarge(Exception):
    """The body passed the cap while it was read."""


async def read_capped(chunks: AsyncIterator[bytes], cap: int = MAX_BODY_BYTES) -> bytes:
    """Read a body from its chunks, stopping as soon as more than ``cap`` bytes arrived (``BodyTooLarge``)."""
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > cap:
            raise BodyTooLarge(size)
        parts.append(chunk)
    return b"".join(parts)


def too_large(cap: int = MAX_BODY_BYTES) -> Refusal:
    return Refusal(413, "body_too_large", f"request body is over the {cap}-byte cap; Slack interactivity payloads "
                                          "are far smaller")


class FailureLimiter:
    """Failed signature checks per source in a sliding window; a source over the limit is refused
    (429) before its headers are even looked at, until its oldest failure leaves the window.

    Per process (each API-server worker keeps its own) and in memory: it bounds the cost of guessing,
    it is not an account lockout. The source is the client address the API server sees; behind a
    proxy that is the proxy unless uvicorn is told to trust its forwarded headers (docs/oncall-slack.md).
    Thread-safe; memory bounded by ``max_sources``.
    """

    def __init__(self, limit: int = FAILURES_PER_WINDOW, window: float = FAILURE_WINDOW_SECONDS,
                 max_sources: int = MAX_TRACKED_SOURCES):
        if limit < 1 or window <= 0 or max_sources < 1:
            raise ValueError("limit, window and max_sources must be positive")
        self.limit, self.window, self.max_sources = limit, window, max_sources
        self._failures: OrderedDict[str, list[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _recent(self, source: str, now: float) -> list[float]:
        times = [t for t in self._failures.get(source, []) if now - t < self.window]
        if times:
            self._failures[source] = times
        else:
            self._failures.pop(source, None)
        return times

    def retry_after(self, source: str, *, now: float | None = None) -> int | None:
        """Seconds until ``source`` may try again, or None if it is not limited."""
        now = time.monotonic() if now is None else now
        with self._lock:
            times = self._recent(source, now)
            if len(times) < self.limit:
                return None
            return max(1, int(times[-self.limit] + self.window - now + 0.999))

    def failed(self, source: str, *, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            times = self._recent(source, now)
            times.append(now)
            self._failures[source] = times[-self.limit:]
            self._failures.move_to_end(source)
            while len(self._failures) > self.max_sources:
                self._failures.popitem(last=False)

    def refusal(self, source: str, *, now: float | None = None) -> Refusal | None:
        wait = self.retry_after(source, now=now)
        if wait is None:
            return None
        return Refusal(429, "rate_limited",
                       f"too many requests with failed signatures from {source} ({self.limit} within "
                       f"{int(self.window)} s); try again in {wait} s", counts_as_failure=False)
