"""Alerts on import outcomes: rows of `contact_import_alerts`, the outbox of their delivery.

Rules, evaluated on what a run observed (the rows it also writes to the history table):
- `failed`: an import became `failed`;
- `high_failure_rate`: an import became `completed` with `counts.failed / counts.total` at
  or above `failure_rate`;
- `open_too_long`: an import has been open longer than `open_hours` (by its `created_at`
  against the run's clock); raised once per import, the state remembers which were;
- `malformed`: a record Resend returned could not be loaded as typed and was set aside in
  `contact_imports_quarantine` (once per malformed version of it).

An alert's `alert_key` is the import, the rule and the observation that triggered it, and
the table is insert-only on that key: the same observation raised again (a rerun, a first
run on a wiped state) is the same row, and a row once delivered stays delivered. The rows are
yielded by the same resource as the imports, so both land in one load package or neither
does. The first run with alerts on (no state yet, or alerts off until now) raises nothing
older than `since_hours`, so that turning alerts on does not replay years of history.
Delivery is not the source's job: see `resend_imports_pipelines.delivery`. The rules' settings
are `config.AlertRules`.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

from dlt.sources import DltResource

from .config import AlertRules
from .history import add_insert_only_table
from .records import Row, fingerprint_parts
from .settings import COUNT_FIELDS

ALERTS_TABLE = "contact_import_alerts"
FAILED = "failed"
HIGH_FAILURE_RATE = "high_failure_rate"
OPEN_TOO_LONG = "open_too_long"
MALFORMED = "malformed"
RULES = (FAILED, HIGH_FAILURE_RATE, OPEN_TOO_LONG, MALFORMED)

ALERT_COLUMNS: Any = {
    "alert_key": {"data_type": "text", "nullable": False},
    "import_id": {"data_type": "text", "nullable": False},
    "rule": {"data_type": "text", "nullable": False},
    "status": {"data_type": "text"},
    **{f"counts__{name}": {"data_type": "bigint"} for name in COUNT_FIELDS},
    "failure_rate": {"data_type": "double"},
    "created_at": {"data_type": "timestamp", "timezone": True},
    "raised_at": {"data_type": "timestamp", "timezone": True, "nullable": False},
}


def add_alerts_table(resource: DltResource) -> DltResource:
    """Declares the alerts table on the resource that feeds it (one load package for both)."""
    return add_insert_only_table(resource, ALERTS_TABLE, "alert_key", ALERT_COLUMNS)


# A rule on what a run observed fires when the observation meets it and the state the table
# held before did not: an import that became failed, or a completed import whose counts now
# reach the failure rate (also one corrected deep in history). An import back after a
# deletion is compared with its state before the deletion.


def _rate(counts: Mapping[str, Any]) -> Optional[float]:
    total, failed = counts.get("total"), counts.get("failed")
    return failed / total if total and total > 0 and failed is not None else None


@dataclass(frozen=True)
class Alerting:
    """The alert rules of one run, its clock, and whether it is the first with alerts on
    (it then raises nothing older than `since_hours`)."""

    rules: AlertRules
    now: datetime
    first_alerting_run: bool

    @property
    def since(self) -> datetime:
        return self.now - timedelta(hours=self.rules.since_hours)

    def _was(self, before: Optional[str]) -> Tuple[bool, bool]:
        """Whether the state before was failed, and whether it was completed at a high rate."""
        if before is None:
            return False, False
        status, counts = fingerprint_parts(before)
        rate = _rate(counts)
        high = status == "completed" and rate is not None and rate >= self.rules.failure_rate
        return status == "failed", high

    def on_observed(
        self, seen: Sequence[Row], keys: Sequence[str], before: Sequence[Optional[str]]
    ) -> List[Tuple[str, Dict[str, Any]]]:
        """Alerts on imports observed in a new state: `seen` (their rows), `keys` (their
        observation keys) and `before` (the fingerprint the table held), row for row; each
        with the observation key that raised it."""
        rules = self.rules
        if not rules.enabled or not (rules.failed or rules.high_failure_rate):
            return []
        since = self.since
        raised: List[Tuple[str, Dict[str, Any]]] = []
        for row, key, prior in zip(seen, keys, before, strict=True):
            status = row.get("status")
            if status != "failed" and status != "completed":
                continue
            was_failed, was_high = self._was(prior)
            total, failed = row.get("counts__total"), row.get("counts__failed")
            rate = failed / total if total and total > 0 and failed is not None else None
            rule: Optional[str] = None
            if rules.failed and status == "failed" and not was_failed:
                rule = FAILED
            elif (
                rules.high_failure_rate
                and status == "completed"
                and rate is not None
                and rate >= rules.failure_rate
                and not was_high
            ):
                rule = HIGH_FAILURE_RATE
            happened_at = row.get("completed_at") or row["created_at"]
            if rule is None or (self.first_alerting_run and happened_at < since):
                continue
            alert = _alert_row({**row, "failure_rate": rate}, rule, f"{key}|{rule}", self.now)
            raised.append((key, alert))
        return raised

    def on_malformed(self, quarantined: Iterable[Dict[str, Any]]) -> List[Dict[str, Any]]:
        """An alert per record set aside (`quarantine`): once per malformed version of it; on
        a first alerting run, not for a record created before `since_hours` (when it says
        when)."""
        if not (self.rules.enabled and self.rules.malformed):
            return []
        since = self.since
        return [
            {
                "alert_key": f"{row['quarantine_key']}|{MALFORMED}",
                "import_id": row["import_id"] or "",
                "rule": MALFORMED,
                "raised_at": self.now,
            }
            for row in quarantined
            if not (
                self.first_alerting_run
                and row["created_at"] is not None
                and row["created_at"] < since
            )
        ]

    def on_open(
        self, open_rows: Iterable[Dict[str, Any]], alerted: Set[str]
    ) -> tuple[List[Dict[str, Any]], Set[str]]:
        """Alerts on open imports (their latest rows) open longer than `open_hours`, except
        those in `alerted`; and the ids alerted so far. On a first run, an import that
        crossed the limit before `since_hours` is recorded as alerted without an alert, and
        so is every one while the rule is switched off (turning it on does not replay them)."""
        rules = self.rules
        if not rules.enabled:
            return [], alerted
        limit = timedelta(hours=rules.open_hours)
        since = self.since
        rows: List[Dict[str, Any]] = []
        alerted = set(alerted)
        for row in open_rows:
            crossed_at = row["created_at"] + limit
            if row["id"] in alerted or crossed_at > self.now:
                continue
            alerted.add(row["id"])
            if not rules.open_too_long or (self.first_alerting_run and crossed_at < since):
                continue
            key = f"{row['id']}|{OPEN_TOO_LONG}"
            rows.append(_alert_row(row, OPEN_TOO_LONG, key, self.now))
        return rows, alerted


def _alert_row(row: Dict[str, Any], rule: str, key: str, now: datetime) -> Dict[str, Any]:
    return {
        "alert_key": key,
        "import_id": row["id"],
        "rule": rule,
        "status": row.get("status"),
        **{f"counts__{name}": row.get(f"counts__{name}") for name in COUNT_FIELDS},
        "failure_rate": row.get("failure_rate"),  # of a finished import: counts.failed / total
        "created_at": row["created_at"],
        "raised_at": now,
    }
