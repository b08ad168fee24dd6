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
Delivery is not the source's job: see `pipelines/alert_delivery.py`.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

import dlt
from dlt.sources import DltResource

from .errors import ResendConfigError
from .history import add_insert_only_table
from .records import Row, fingerprint_parts
from .settings import COUNT_FIELDS

ALERTS_TABLE = "contact_import_alerts"
CONFIG_SECTION = "alerts"
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
    # set when every configured channel has it; per channel below
    "delivered_at": {"data_type": "timestamp", "timezone": True},
    "slack_delivered_at": {"data_type": "timestamp", "timezone": True},
    "webhook_delivered_at": {"data_type": "timestamp", "timezone": True},
}


@dataclass(frozen=True)
class AlertRules:
    """The `[alerts]` settings (`ALERTS__...`); each rule can be switched off."""

    enabled: bool = True
    failed: bool = True
    high_failure_rate: bool = True
    failure_rate: float = 0.05
    open_too_long: bool = True
    open_hours: float = 24.0
    since_hours: float = 24.0
    malformed: bool = True

    @classmethod
    def from_config(cls) -> "AlertRules":
        rules = cls(**config_values(cls()))
        if rules.enabled:
            rules.check()
        return rules

    def check(self) -> None:
        if not 0 < self.failure_rate <= 1:
            raise ResendConfigError(
                f"alerts failure_rate must be above 0 and at most 1, got {self.failure_rate}"
            )
        if self.open_hours <= 0 or self.since_hours < 0:
            raise ResendConfigError(
                "alerts open_hours must be above 0 and since_hours 0 or more, got"
                f" {self.open_hours} and {self.since_hours}"
            )


def config_values(defaults: Any) -> Dict[str, Any]:
    """The `[alerts]` values (`ALERTS__...`) of a settings dataclass's fields, each typed like
    its default, which stands where nothing is set."""
    values: Dict[str, Any] = {}
    for name, default in vars(defaults).items():
        value = dlt.config.get(f"{CONFIG_SECTION}.{name}", type(default))
        values[name] = default if value is None else value
    return values


def add_alerts_table(resource: DltResource) -> DltResource:
    """Declares the alerts table on the resource that feeds it (one load package for both)."""
    return add_insert_only_table(resource, ALERTS_TABLE, "alert_key", ALERT_COLUMNS)


def to_alerts_table(rows: List[Dict[str, Any]]) -> Any:
    return dlt.mark.with_table_name(rows, ALERTS_TABLE)


# Alerts on what a run observed, in two forms that `tests/test_columnar.py` proves equal:
# plain rows (short incremental runs) and Arrow tables (runs that read many rows). A rule
# fires when the observation meets it and the state the table held before did not: an import
# that became failed, or a completed import whose counts now reach the failure rate (also one
# corrected deep in history). An import back after a deletion is compared with its state
# before the deletion.


def _rate(counts: Mapping[str, Any]) -> Optional[float]:
    total, failed = counts.get("total"), counts.get("failed")
    return failed / total if total and total > 0 and failed is not None else None


def _was(before: Optional[str], rules: AlertRules) -> Tuple[bool, bool]:
    """Whether the state before was failed, and whether it was completed at a high rate."""
    if before is None:
        return False, False
    status, counts = fingerprint_parts(before)
    rate = _rate(counts)
    high = status == "completed" and rate is not None and rate >= rules.failure_rate
    return status == "failed", high


def raised_on_rows(
    seen: Sequence[Row],
    history: Sequence[Dict[str, Any]],
    before: Sequence[Optional[str]],
    rules: AlertRules,
    now: datetime,
    first_alerting_run: bool,
) -> List[Dict[str, Any]]:
    """Alerts on imports observed in a new state: `seen` (their rows), `history` (the history
    rows the run writes for them) and `before` (the fingerprint the table held), row for row."""
    if not rules.enabled or not (rules.failed or rules.high_failure_rate):
        return []
    since = now - timedelta(hours=rules.since_hours)
    raised: List[Dict[str, Any]] = []
    for row, observed, prior in zip(seen, history, before, strict=True):
        was_failed, was_high = _was(prior, rules)
        rate = _rate({name: row.get(f"counts__{name}") for name in ("total", "failed")})
        rule: Optional[str] = None
        if rules.failed and row.get("status") == "failed" and not was_failed:
            rule = FAILED
        elif (
            rules.high_failure_rate
            and row.get("status") == "completed"
            and rate is not None
            and rate >= rules.failure_rate
            and not was_high
        ):
            rule = HIGH_FAILURE_RATE
        happened_at = row.get("completed_at") or row["created_at"]
        if rule is None or (first_alerting_run and happened_at < since):
            continue
        key = f"{observed['observation_key']}|{rule}"
        raised.append(_alert_row({**row, "failure_rate": rate}, rule, key, now))
    return raised


def raised_on_table(
    seen: Any,
    history: Any,
    before: Sequence[Optional[str]],
    rules: AlertRules,
    now: datetime,
    first_alerting_run: bool,
) -> List[Dict[str, Any]]:
    """`raised_on_rows` over Arrow tables, the few alerts it raises as rows."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not rules.enabled or not (rules.failed or rules.high_failure_rate):
        return []
    was = [_was(prior, rules) for prior in before]
    was_failed = pa.array([failed for failed, _ in was], pa.bool_())
    was_high = pa.array([high for _, high in was], pa.bool_())
    status = seen.column("status")
    total = pc.cast(seen.column("counts__total"), pa.float64())
    rate = pc.if_else(
        pc.greater(total, 0),
        pc.divide(pc.cast(seen.column("counts__failed"), pa.float64()), total),
        pa.scalar(None, pa.float64()),
    )
    failed = pc.and_(pc.equal(status, "failed"), pc.invert(was_failed))
    high = pc.and_(
        pc.and_(pc.equal(status, "completed"), pc.greater_equal(rate, rules.failure_rate)),
        pc.invert(was_high),
    )
    failed = pc.fill_null(pc.and_(failed, pa.scalar(rules.failed)), False)
    high = pc.fill_null(pc.and_(high, pa.scalar(rules.high_failure_rate)), False)
    chosen = pc.or_(failed, high)
    if first_alerting_run:
        happened_at = pc.coalesce(seen.column("completed_at"), seen.column("created_at"))
        since = pa.scalar(now - timedelta(hours=rules.since_hours), happened_at.type)
        chosen = pc.and_(chosen, pc.greater_equal(happened_at, since))
    if not pc.any(chosen).as_py():
        return []
    picked = seen.append_column("failure_rate", rate).filter(chosen)
    keys = history.column("observation_key").filter(chosen).to_pylist()
    raised: List[Dict[str, Any]] = []
    for row, key in zip(picked.to_pylist(), keys, strict=True):
        rule = FAILED if row["status"] == "failed" and rules.failed else HIGH_FAILURE_RATE
        raised.append(_alert_row(row, rule, f"{key}|{rule}", now))
    return raised


def raised_on_malformed(
    quarantined: Iterable[Dict[str, Any]],
    rules: AlertRules,
    now: datetime,
    first_alerting_run: bool,
) -> List[Dict[str, Any]]:
    """An alert per record set aside (`quarantine`): once per malformed version of it; on a
    first alerting run, not for a record created before `since_hours` (when it says when)."""
    if not (rules.enabled and rules.malformed):
        return []
    since = now - timedelta(hours=rules.since_hours)
    return [
        {
            "alert_key": f"{row['quarantine_key']}|{MALFORMED}",
            "import_id": row["import_id"] or "",
            "rule": MALFORMED,
            "raised_at": now,
        }
        for row in quarantined
        if not (first_alerting_run and row["created_at"] is not None and row["created_at"] < since)
    ]


def raised_on_open(
    open_rows: Iterable[Dict[str, Any]],
    alerted: Set[str],
    rules: AlertRules,
    now: datetime,
    first_alerting_run: bool,
) -> tuple[List[Dict[str, Any]], Set[str]]:
    """Alerts on open imports (their latest rows) open longer than `open_hours`, except those
    in `alerted`; and the ids alerted so far. On a first run, an import that crossed the
    limit before `since_hours` is recorded as alerted without an alert, and so is every one
    while the rule is switched off (turning it on does not replay them)."""
    if not rules.enabled:
        return [], alerted
    limit = timedelta(hours=rules.open_hours)
    since = now - timedelta(hours=rules.since_hours)
    rows: List[Dict[str, Any]] = []
    alerted = set(alerted)
    for row in open_rows:
        crossed_at = row["created_at"] + limit
        if row["id"] in alerted or crossed_at > now:
            continue
        alerted.add(row["id"])
        if not rules.open_too_long or (first_alerting_run and crossed_at < since):
            continue
        rows.append(_alert_row(row, OPEN_TOO_LONG, f"{row['id']}|{OPEN_TOO_LONG}", now))
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
