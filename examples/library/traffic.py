"""Example "library": the lending application's requests, for the simulator (devtools).

Loans are created at the migrating branches only (MAIN, EAST: the config's scope) for patrons seen
in recent loans, updated by renewing or returning them, and read. ``last_modified`` is the column
every change bumps (the simulator sets it to now(); it maps to circulation.loans.changed_at, the
backfill's version column).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from devtools.simulator_cli import Workload

TOUCH_COLUMNS = ("last_modified",)
ENTITY = "loans"


class LoanWorkload(Workload):
    sample_column = "patron_no"

    def create_values(self) -> dict[str, Any]:
        now = datetime.now(UTC).replace(microsecond=0)
        return {"patron_no": self.rng.choice(self.samples),
                "isbn": f"978-{self.rng.randrange(10**10):010d}",
                "branch_code": self.rng.choice(["MAIN", "EAST"]),
                "loan_state": "OUT", "checked_out_at": now,
                "due_back": date.today() + timedelta(days=21), "renewals": 0}

    def update_values(self) -> dict[str, Any]:
        state = self.rng.choice(["RENEWED", "OVERDUE", "RETURNED"])
        return {"loan_state": state, "renewals": self.rng.randint(0, 3)}


class FineWorkload(Workload):
    """Fines (migration.full.yaml): assessed on recent loans, amounts with two decimals, corrected later."""

    sample_column = "loan_no"

    def create_values(self) -> dict[str, Any]:
        return {"loan_no": self.rng.choice(self.samples),
                "amount": Decimal(self.rng.randrange(50, 5000)) / 100,
                "reason": self.rng.choice(["late return", "damaged cover", "lost item"]),
                "assessed_at": datetime.now(UTC).replace(microsecond=0)}

    def update_values(self) -> dict[str, Any]:
        return {"amount": Decimal(self.rng.randrange(0, 5000)) / 100}
