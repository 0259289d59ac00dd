"""What a deferred wait polls: one synchronous object per waiting task, with no Airflow in it.

Every long wait of the migration (a gate, a read-rollout hold, the recovery watch after a rollback)
is the same loop: poll, decide, sleep, give up at a deadline. The loop itself (asyncio, the
triggerer, serialisation) is :class:`migration_engine.airflow.triggers.PollingTrigger`; what is
polled and decided is a *watch* in the engine, so it runs and is tested without Airflow.

A watch's methods run in a worker thread of the triggerer (they may block on psycopg2 or Slack);
each returns the event payload to fire (a JSON-able dict, which ends the wait) or ``None`` to keep
waiting. A watch never raises for a failed check: it counts errors and decides (fail closed).
"""

from __future__ import annotations

from typing import Any, Protocol

Payload = dict[str, Any]


class Watch(Protocol):
    def start(self) -> Payload | None:
        """Set up (resolve the gate, load state); a payload here means there is nothing to wait for."""

    def poll(self) -> Payload | None:
        """One check: record it, act on it (page, roll back), and fire when the wait is decided."""

    def expired(self) -> Payload:
        """The deadline passed undecided: the final payload (timeout, or a fail-closed decision)."""
