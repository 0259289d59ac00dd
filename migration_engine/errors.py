"""The one error hierarchy of the product.

Why one root: the Airflow layer maps errors to task outcomes by class, not by module. A
:class:`Refused` means "the migration is not in a state where this step applies" and fails the task
without retries (retrying cannot help); anything else under :class:`MigrationError` is a problem
the message names (bad config, missing connection, a check that found differences) and follows the
task's retry policy. Modules subclass these instead of ``RuntimeError`` so callers can catch
``MigrationError`` for "ours, with a message meant for the operator".
"""

from __future__ import annotations

from collections.abc import Sequence


class MigrationError(Exception):
    """Base of every error the product raises on purpose; the message is meant for an operator."""


class ConfigError(MigrationError, ValueError):
    """The migration config (or a Param that overrides it) is invalid; the message names the key."""


class ConnectionConfigError(MigrationError):
    """A database connection is missing, misconfigured or unreachable; the message names it."""


class Refused(MigrationError):
    """The migration is not in a state where this step applies; the task fails without retries."""


class VerificationError(MigrationError):
    """A step's result is not (fully) in place, or a check found differences; lists every problem."""

    def __init__(self, problems: Sequence[str] | str, *, step_id: str | None = None):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.step_id = step_id
        head = f"{step_id}: " if step_id else ""
        super().__init__(head + "; ".join(self.problems))
