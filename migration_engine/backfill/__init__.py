"""Historical backfill at database speed: keyset pages, set-based copy, resumable, throttled.

The seed's job reads OFFSET pages of 100, checks each row for existence, inserts row by row and
sleeps a second per page (≤ 100 rows/s, and OFFSET gets slower the deeper it goes). This package
copies with one ``COPY`` out of the legacy database and one ``INSERT ... SELECT ... ON CONFLICT``
into the new one per batch, commits a checkpoint per range after each batch, and throttles
itself (adaptive batch size, rows/s cap, pauses on health signals). Nothing in it is specific to
the marketplace: everything comes from the entity's mapping in the config.

Parts: :mod:`.plan` (validate, split into ranges), :mod:`.step` (a pass as a plan/apply/verify
step), :mod:`.engine` (copy one range), :mod:`.settings` (the config's ``backfill`` section + per-run
overrides), :mod:`.throttle`, :mod:`.store` (control tables),
:mod:`.runs` (finish/status), :mod:`.tasks` (the engine side of the phase-2 tasks; the Airflow side
is ``migration_engine.airflow.phase2``), ``python -m migration_engine.backfill`` (CLI).
"""

from migration_engine.backfill.engine import BadRowError, ConnectionLostError, RangeBusyError, RangeResult, RangeWorker
from migration_engine.backfill.plan import Plan, RangeJob, plan_entity
from migration_engine.backfill.runs import finish_run, status
from migration_engine.backfill.settings import BackfillError, BackfillSettingsError, backfill_settings, with_overrides

__all__ = ["BackfillError", "BackfillSettingsError", "BadRowError", "ConnectionLostError", "Plan", "RangeBusyError",
           "RangeJob", "RangeResult", "RangeWorker", "backfill_settings", "finish_run", "plan_entity", "status",
           "with_overrides"]
