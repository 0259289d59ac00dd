"""The ``fake_slack`` pytest fixture: the real Slack client talks to a fake Web API on 127.0.0.1.

The server lives in ``devtools/slack_sink.py`` (the demo uses it as its local Slack sink).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devtools.slack_sink import FakeSlack


@pytest.fixture(name="fake_slack")
def fake_slack_fixture(monkeypatch) -> Iterator[FakeSlack]:
    """A running fake Slack wired to the ``slack_api_default`` Airflow connection (env)."""
    fake = FakeSlack().start()
    monkeypatch.setenv("AIRFLOW_CONN_SLACK_API_DEFAULT", fake.connection_json())
    try:
        yield fake
    finally:
        fake.stop()
