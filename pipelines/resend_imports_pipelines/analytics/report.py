"""`resend-imports report`: the daily summary, the worst imports and the alerts, read from
the destination without ever writing to it (`render.py` prints them)."""

from datetime import UTC, datetime, timedelta
from typing import Any, Dict, List, Optional

import dlt
from dlt.common.destination.exceptions import (
    DestinationTerminalException,
    DestinationUndefinedEntity,
)

from resend_imports.alerts import ALERTS_TABLE
from resend_imports.causes import causes
from resend_imports.errors import ResendError
from resend_imports.settings import TABLE_NAME

from ..destinations import Target, target_of
from ..destinations.duckdb import held_file
from .lakehouse import lakehouse_sql
from .views import DAILY_VIEW, ENRICHED_VIEW

WORST_LIMIT = 10

DAILY_COLUMNS = (
    "day",
    "imports",
    "completed_imports",
    "failed_imports",
    "open_imports",
    "rows_total",
    "rows_created",
    "rows_updated",
    "rows_skipped",
    "rows_failed",
    "median_duration_seconds",
)
WORST_COLUMNS = ("id", "status", "created_at", "counts__total", "counts__failed", "failure_rate")
DELETED_COLUMNS = ("deleted_imports",)
REPORT_ALERT_COLUMNS = ("raised_at", "import_id", "rule", "status", "failure_rate", "delivered_at")

Table = List[Dict[str, Any]]


class ReportError(ResendError):
    """The report cannot be read: what is missing or in the way, and what to do about it."""


def read_report(
    pipeline: dlt.Pipeline, days: int, account: Optional[str] = None
) -> Dict[str, Table]:
    """The `days` most recent days with imports, the worst imports among them, how many
    imports are marked deleted (left out of the other two), and the alerts of the last
    `days` days.

    Nothing is written: DuckDB is opened read-only (so the report runs beside other readers
    of the file), PostgreSQL in a read-only session, and nothing is created (a DuckDB file
    that does not exist is an error, never a new empty file; missing views are an error
    that says to sync). A path that is no DuckDB database is left untouched; a server that
    cannot be used is told in one line. `account`: that account's imports only (the daily
    view has a row per account and day; without it, days are summed over the accounts, and
    the median duration is left out of a day several accounts share).

    Raises:
        ReportError: no dataset or no views yet, or the DuckDB file is being written.
    """
    target = target_of(pipeline)
    target.kind.check(target, reading=True)
    pipeline.destination = target.kind.read_only(target)
    try:
        return _query_report(pipeline, target, days, account)
    except ReportError:
        raise
    except DestinationUndefinedEntity:
        raise ReportError(
            f"the views {DAILY_VIEW} and {ENRICHED_VIEW} are missing from {target.where}"
            " (synced by an earlier version, or its last sync failed before creating them):"
            " run `resend-imports sync` once, it creates them"
        ) from None
    except Exception as exc:
        writer = _writer_holding(exc)
        if writer is None:
            raise
        raise ReportError(writer) from None


def _writer_holding(exc: BaseException) -> Optional[str]:
    """Why DuckDB refused to open the file for reading: another process writes it."""
    for cause in causes(exc):
        held = held_file(str(cause))
        if held is not None:
            who = f"another process (PID {held[1]})" if held[1] else "another process"
            return (
                f"the DuckDB file {held[0]} is open for writing in {who}, a sync most likely:"
                " DuckDB lets readers in only beside other readers; run the report again when"
                " it has finished"
            )
    return None


def _daily_query(daily_view: str, days: int, account: Optional[str]) -> str:
    """The daily rows of one account, or of all of them summed per day."""
    if account is not None:
        return (
            f"SELECT {', '.join(DAILY_COLUMNS)} FROM {daily_view} WHERE account = %s"
            f" ORDER BY day DESC LIMIT {days}"
        )
    sums = [f"SUM({column})" for column in DAILY_COLUMNS[1:-1]]
    median = "CASE WHEN COUNT(*) = 1 THEN MAX(median_duration_seconds) END"
    return (
        f"SELECT day, {', '.join(sums)}, {median} FROM {daily_view}"
        f" GROUP BY day ORDER BY day DESC LIMIT {days}"
    )


def _query_report(
    pipeline: dlt.Pipeline, target: Target, days: int, account: Optional[str]
) -> Dict[str, Table]:
    if target.kind.name == "filesystem":  # Delta or Iceberg: the views made in memory
        with lakehouse_sql(pipeline) as lake:
            if lake is not None:
                return _report_from(lake, target, days, account)
    with pipeline.sql_client() as client:
        return _report_from(client, target, days, account)


def _report_from(
    client: Any, target: Target, days: int, account: Optional[str]
) -> Dict[str, Table]:
    only = "" if account is None else " AND account = %s"
    scope = [] if account is None else [account]
    daily_view = client.make_qualified_table_name(DAILY_VIEW)
    enriched_view = client.make_qualified_table_name(ENRICHED_VIEW)
    if not client.has_dataset():
        raise ReportError(
            f"no dataset {client.dataset_name!r} in the {target.where}: it holds nothing"
            " of this connector yet; run `resend-imports sync` first (or name the dataset"
            " with --dataset)"
        )
    daily_rows = client.execute_sql(_daily_query(daily_view, days, account), *scope)
    daily = [dict(zip(DAILY_COLUMNS, row, strict=True)) for row in daily_rows or []]
    worst: Table = []
    if daily:
        oldest_day = daily[-1]["day"]
        worst_rows = client.execute_sql(
            f"SELECT {', '.join(WORST_COLUMNS)} FROM {enriched_view}"
            " WHERE is_terminal AND failure_rate IS NOT NULL AND created_at >= %s"
            f"{only} ORDER BY failure_rate DESC, created_at DESC LIMIT {WORST_LIMIT}",
            datetime.combine(oldest_day, datetime.min.time()).isoformat() + "+00:00",
            *scope,
        )
        worst = [dict(zip(WORST_COLUMNS, row, strict=True)) for row in worst_rows or []]
    table = client.make_qualified_table_name(TABLE_NAME)
    try:
        deleted_rows = client.execute_sql(
            f"SELECT count(*) FROM {table} WHERE deleted_at IS NOT NULL{only}", *scope
        )
    except DestinationTerminalException:  # a table no sync of this version wrote yet
        deleted_rows = [(0,)]
    deleted = [{"deleted_imports": deleted_rows[0][0] if deleted_rows else 0}]
    alerts = _alerts_of_the_period(client, days, account)
    return {"daily": daily, "worst_imports": worst, "deleted": deleted, "alerts": alerts}


def _alerts_of_the_period(client: Any, days: int, account: Optional[str]) -> Table:
    """Alerts raised in the last `days` days, newest first (none when none was ever raised)."""
    table = client.make_qualified_table_name(ALERTS_TABLE)
    try:
        rows = client.execute_sql(
            f"SELECT {', '.join(REPORT_ALERT_COLUMNS)} FROM {table} WHERE raised_at >= %s"
            f"{'' if account is None else ' AND account = %s'} ORDER BY raised_at DESC, alert_key",
            datetime.now(UTC) - timedelta(days=days),
            *([] if account is None else [account]),
        )
    except DestinationTerminalException:  # no alert raised into this dataset yet
        return []
    return [dict(zip(REPORT_ALERT_COLUMNS, row, strict=True)) for row in rows or []]
