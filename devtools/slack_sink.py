"""A fake Slack Web API on 127.0.0.1: the tests' Slack, and the demo's local Slack sink.

The real ``slack_sdk`` client (through the Airflow ``SlackHook``) talks to it over HTTP, so tests
cover request encoding, retries and error handling exactly as in production. Every call is
recorded (method, headers, parsed body, the status and body answered). Answers look like Slack's:

* ``chat.postMessage`` -> ``{"ok": true, "channel": "<id>", "ts": "<increasing>", "message": {...}}``;
  channel names are mapped to stable fake ids (``CFAKE0001``...), as Slack answers with the id.
* ``chat.update`` -> ok with the same ts; like Slack it wants the channel *id* and a known ts
  (``channel_not_found`` / ``message_not_found`` otherwise).
* ``auth.test`` -> ok with fake team/user/bot ids; anything else -> ``{"ok": true}``.

Failures are queued with ``fail_next`` (HTTP 500, 429 with ``Retry-After``, ``{"ok": false}``...).
"""

from __future__ import annotations

import email.parser
import email.policy
import itertools
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

# Form-encoded Slack calls carry structured arguments as JSON strings.
_JSON_FORM_FIELDS = ("blocks", "attachments", "metadata")


@dataclass
class SlackCall:
    method: str
    headers: dict[str, str]
    body: dict[str, Any]
    status: int = 200
    response: Any = None
    at: float = field(default_factory=time.time)

    @property
    def ok(self) -> bool:
        return self.status == 200 and isinstance(self.response, dict) and bool(self.response.get("ok"))


@dataclass
class _Failure:
    status: int
    body: Any
    headers: dict[str, str]
    method: str | None
    remaining: int | None  # None: until reset()


_DEFAULT_ERROR_BODIES = {
    429: {"ok": False, "error": "ratelimited"},
    500: {"ok": False, "error": "internal_error"},
    503: {"ok": False, "error": "service_unavailable"},
}


def _parse_body(content_type: str, raw: bytes) -> dict[str, Any]:
    ctype = (content_type or "").split(";")[0].strip().lower()
    if not raw:
        return {}
    if ctype == "application/json":
        return json.loads(raw.decode("utf-8"))
    if ctype == "multipart/form-data":
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw
        )
        out: dict[str, Any] = {}
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            filename = part.get_filename()
            out[name] = payload if filename else payload.decode("utf-8", "replace")
        return _decode_json_fields(out)
    # application/x-www-form-urlencoded (slack_sdk's default for api_call(params=...))
    parsed = parse_qs(raw.decode("utf-8"), keep_blank_values=True)
    return _decode_json_fields({k: v[0] if len(v) == 1 else v for k, v in parsed.items()})


def _decode_json_fields(body: dict[str, Any]) -> dict[str, Any]:
    for key in _JSON_FORM_FIELDS:
        if isinstance(body.get(key), str):
            try:
                body[key] = json.loads(body[key])
            except ValueError:
                pass
    return body


class FakeSlack:
    """The server plus its call log. Thread-safe; start() / stop() or use the fixture."""

    token = "xoxb-fake"

    def __init__(self, log_path: str | None = None) -> None:
        self.log_path = log_path  # the demo appends every call here as JSON lines
        self.calls: list[SlackCall] = []
        self._failures: deque[_Failure] = deque()
        self._lock = threading.Lock()
        self._ts = itertools.count(1)
        self._ts_base = int(time.time())
        self._channel_ids: dict[str, str] = {}
        self._messages: dict[tuple[str, str], dict[str, Any]] = {}  # (channel id, ts) -> message
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------------------
    def start(self, port: int = 0) -> FakeSlack:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                fake._handle(self)

            def do_GET(self) -> None:
                fake._handle(self)

            def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-slack", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def port(self) -> int:
        assert self._server is not None, "fake Slack is not running"
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """Base URL for the Slack client (the method name is appended)."""
        return f"http://127.0.0.1:{self.port}/api/"

    def connection_json(self) -> str:
        """The value for ``AIRFLOW_CONN_<ID>`` pointing a Slack API connection here."""
        return json.dumps({"conn_type": "slack", "password": self.token, "extra": {"base_url": self.url}})

    # --- programming failures -------------------------------------------------------------
    def fail_next(
        self,
        status: int | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
        *,
        times: int | None = 1,
        method: str | None = None,
    ) -> None:
        """Queue a failure for the next call(s).

        ``status`` defaults to 500, or 200 when only ``body`` is given (``{"ok": false, ...}``).
        ``times=None`` fails every matching call until ``reset()``; ``method`` limits it to one
        API method. Queued failures are used in order.
        """
        if status is None:
            status = 200 if body is not None else 500
        if body is None:
            body = _DEFAULT_ERROR_BODIES.get(status, {"ok": False, "error": f"http_{status}"})
        with self._lock:
            self._failures.append(_Failure(status, body, dict(headers or {}), method, times))

    def fail_always(self, status: int | None = None, body: Any = None, headers: dict[str, str] | None = None,
                    *, method: str | None = None) -> None:
        self.fail_next(status, body, headers, times=None, method=method)

    def reset(self) -> None:
        """Forget queued failures and recorded calls (channel ids and messages are kept)."""
        with self._lock:
            self._failures.clear()
            self.calls.clear()

    # --- inspecting -----------------------------------------------------------------------
    def messages(self, method: str = "chat.postMessage", *, delivered: bool = True) -> list[dict[str, Any]]:
        """Parsed request bodies of ``method`` calls (only those answered ok, unless delivered=False)."""
        with self._lock:
            return [c.body for c in self.calls if c.method == method and (c.ok or not delivered)]

    def calls_to(self, method: str) -> list[SlackCall]:
        with self._lock:
            return [c for c in self.calls if c.method == method]

    def channel_id(self, name: str) -> str:
        """The fake id Slack answers for a channel name (``#x`` and ``x`` are the same channel)."""
        with self._lock:
            return self._channel_id(name)

    def wait_for(self, method: str = "chat.postMessage", count: int = 1, timeout: float = 10.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.messages(method)
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"expected {count} {method} call(s) within {timeout}s, got {self.messages(method)}")

    # --- serving --------------------------------------------------------------------------
    def _channel_id(self, name: str) -> str:
        key = name.lstrip("#")
        if key.startswith("CFAKE") or key in self._channel_ids.values():
            return key
        if key not in self._channel_ids:
            self._channel_ids[key] = f"CFAKE{len(self._channel_ids) + 1:04d}"
        return self._channel_ids[key]

    def _next_failure(self, method: str) -> _Failure | None:
        for failure in list(self._failures):
            if failure.method not in (None, method):
                continue
            if failure.remaining is not None:
                failure.remaining -= 1
                if failure.remaining <= 0:
                    self._failures.remove(failure)
            return failure
        return None

    def _answer(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        if method == "chat.postMessage":
            channel = body.get("channel")
            if not channel:
                return {"ok": False, "error": "channel_not_found"}
            cid = self._channel_id(str(channel))
            ts = f"{self._ts_base}.{next(self._ts):06d}"
            message = {"type": "message", "bot_id": "BFAKE", "text": body.get("text", ""),
                       "blocks": body.get("blocks", []), "ts": ts}
            if body.get("thread_ts"):
                message["thread_ts"] = body["thread_ts"]
            self._messages[(cid, ts)] = message
            return {"ok": True, "channel": cid, "ts": ts, "message": message}
        if method == "chat.update":
            cid, ts = str(body.get("channel", "")), str(body.get("ts", ""))
            if cid not in self._channel_ids.values():
                return {"ok": False, "error": "channel_not_found"}  # Slack wants the id here
            if (cid, ts) not in self._messages:
                return {"ok": False, "error": "message_not_found"}
            message = self._messages[(cid, ts)]
            message.update({"text": body.get("text", ""), "blocks": body.get("blocks", []), "edited": True})
            return {"ok": True, "channel": cid, "ts": ts, "text": message["text"], "message": message}
        if method == "auth.test":
            return {"ok": True, "url": "https://fake.slack.test/", "team": "Fake", "user": "fakebot",
                    "team_id": "TFAKE", "user_id": "UFAKE", "bot_id": "BFAKE"}
        return {"ok": True}

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        path = urlsplit(req.path).path
        method = path.split("/api/", 1)[1] if "/api/" in path else path.lstrip("/")
        length = int(req.headers.get("Content-Length") or 0)
        raw = req.rfile.read(length) if length else b""
        try:
            body = _parse_body(req.headers.get("Content-Type", ""), raw)
        except ValueError:
            body = {"_raw": raw.decode("utf-8", "replace")}
        headers = dict(req.headers.items())
        with self._lock:
            failure = self._next_failure(method)
            if failure is not None:
                status, answer, extra_headers = failure.status, failure.body, failure.headers
            else:
                status, answer, extra_headers = 200, self._answer(method, body), {}
            self.calls.append(SlackCall(method, headers, body, status, answer))
            if self.log_path:
                with open(self.log_path, "a") as log:
                    log.write(json.dumps({"at": time.time(), "method": method, "body": body}, default=str) + "\n")
        payload = answer if isinstance(answer, bytes) else (
            answer.encode() if isinstance(answer, str) else json.dumps(answer).encode()
        )
        req.send_response(status)
        req.send_header("Content-Type", "application/json; charset=utf-8")
        req.send_header("Content-Length", str(len(payload)))
        for key, value in extra_headers.items():
            req.send_header(key, str(value))
        req.end_headers()
        req.wfile.write(payload)


def main(argv: list[str] | None = None) -> int:
    """Serve forever (the demo's Slack sink): ``python -m devtools.slack_sink --port N``."""
    import argparse
    import signal

    ap = argparse.ArgumentParser(prog="python -m devtools.slack_sink")
    ap.add_argument("--port", type=int, default=28080)
    ap.add_argument("--log", default=None, help="append every call as a JSON line here")
    args = ap.parse_args(argv)
    sink = FakeSlack(log_path=args.log).start(args.port)
    print(f"Slack sink on {sink.url} (log: {args.log})", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    sink.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
