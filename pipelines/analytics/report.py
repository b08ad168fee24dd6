"""`resend-imports report`: the daily summary and the worst imports, read from the destination."""

import csv
import io
import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Dict, List, Optional, Sequence

import dlt
from dlt.common.destination.exceptions import (
    DestinationTerminalException,
    DestinationUndefinedEntity,
)

from sources.resend_imports.alerts import ALERTS_TABLE
from sources.resend_imports.errors import ResendConfigError
from sources.resend_imports.settings import TABLE_NAME

from ..destinations import target_of
from .views import DAILY_VIEW, ENRICHED_VIEW, create_views

FORMATS = ("table", "csv", "json")
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
ALERTS_LIMIT = 20

Table = List[Dict[str, Any]]


def read_report(
    pipeline: dlt.Pipeline, days: int, account: Optional[str] = None
) -> Dict[str, Table]:
    """The `days` most recent days with imports, the worst imports among them, and how many
    imports are marked deleted (left out of the other two).

    Creates the views first when the table was synced without them (an older version). A
    DuckDB file that does not exist is an error, never a new empty file; a path that is no
    DuckDB database is left untouched (DuckDB never opens it); a PostgreSQL server that
    cannot be used is told in one line. `account`: that account's imports only (the daily
    view has a row per account and day; without it, days are summed over the accounts, and
    the median duration is left out of a day several accounts share).
    """
    target = target_of(pipeline)
    target.kind.check(target, reading=True)
    try:
        return _query_report(pipeline, days, account)
    except DestinationUndefinedEntity:
        create_views(pipeline)
        return _query_report(pipeline, days, account)


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


def _query_report(pipeline: dlt.Pipeline, days: int, account: Optional[str]) -> Dict[str, Table]:
    only = "" if account is None else " AND account = %s"
    scope = [] if account is None else [account]
    with pipeline.sql_client() as client:
        daily_view = client.make_qualified_table_name(DAILY_VIEW)
        enriched_view = client.make_qualified_table_name(ENRICHED_VIEW)
        if not client.has_dataset():
            raise ResendConfigError(
                f"no dataset {pipeline.dataset_name!r} in the destination: run"
                " `resend-imports sync` first"
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


# The terminal table: short headers that fit 100 columns; --wide shows every column.
DAILY_HEADERS = {
    "day": "day (UTC)",
    "imports": "imports",
    "completed_imports": "completed",
    "failed_imports": "failed",
    "open_imports": "open",
    "rows_total": "rows",
    "rows_created": "created",
    "rows_updated": "updated",
    "rows_skipped": "skipped",
    "rows_failed": "rows failed",
    "median_duration_seconds": "median s",
}
DAILY_NARROW = tuple(c for c in DAILY_COLUMNS if c not in ("rows_updated", "rows_skipped"))
WORST_HEADERS = {
    "id": "id",
    "status": "status",
    "created_at": "created (UTC)",
    "counts__total": "rows",
    "counts__failed": "failed",
    "failure_rate": "failed %",
}
ALERT_HEADERS = {
    "raised_at": "raised (UTC)",
    "import_id": "import",
    "rule": "rule",
    "status": "status",
    "failure_rate": "failed %",
    "delivered_at": "delivered (UTC)",
}
ALERT_NARROW = tuple(c for c in REPORT_ALERT_COLUMNS if c != "delivered_at")


def _plain(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).isoformat()
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def _cell(value: Any, column: str = "", for_terminal: bool = False) -> str:
    if for_terminal and isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
    value = _plain(value)
    if value is None:
        return ""
    if for_terminal and column == "failure_rate":
        return f"{100 * value:.1f}%"
    if for_terminal and isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _text_table(title: str, columns: Sequence[str], headers: Dict[str, str], rows: Table) -> str:
    cells = [[_cell(row[c], c, for_terminal=True) for c in columns] for row in rows]
    names = [headers[c] for c in columns]
    widths = [max([len(n)] + [len(r[i]) for r in cells]) for i, n in enumerate(names)]
    lines = [title, "  ".join(n.rjust(w) for n, w in zip(names, widths, strict=True))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    if not rows:
        lines.append("(none)")
    return "\n".join(lines)


def render(report: Dict[str, Table], output_format: str, wide: bool = False) -> str:
    """The report as a terminal table (100 columns, or every column with `wide`), CSV (the
    blocks a blank line apart) or JSON."""
    if output_format == "json":
        plain = {
            k: [{c: _plain(v) for c, v in row.items()} for row in t] for k, t in report.items()
        }
        return json.dumps(plain, indent=2)
    if output_format == "csv":
        blocks = []
        for columns, key in (
            (DAILY_COLUMNS, "daily"),
            (WORST_COLUMNS, "worst_imports"),
            (DELETED_COLUMNS, "deleted"),
            (REPORT_ALERT_COLUMNS, "alerts"),
        ):
            buffer = io.StringIO()
            writer = csv.writer(buffer, lineterminator="\n")
            writer.writerow(columns)
            writer.writerows([[_cell(row[c], c) for c in columns] for row in report[key]])
            blocks.append(buffer.getvalue())
        return "\n".join(blocks).rstrip("\n")
    daily = DAILY_COLUMNS if wide else DAILY_NARROW
    return "\n\n".join(
        [
            _text_table("Contact imports per day", daily, DAILY_HEADERS, report["daily"]),
            _text_table(
                "Worst finished imports by failure rate",
                WORST_COLUMNS,
                WORST_HEADERS,
                report["worst_imports"],
            ),
            "Imports deleted in Resend (kept in the table with deleted_at, left out above):"
            f" {report['deleted'][0]['deleted_imports']}",
            _alerts_text(report["alerts"], wide),
        ]
    )


def _alerts_text(alerts: Table, wide: bool) -> str:
    waiting = sum(alert["delivered_at"] is None for alert in alerts)
    title = f"Alerts of the period: {len(alerts)}, {waiting} not delivered yet"
    if len(alerts) > ALERTS_LIMIT:
        title += f" (the {ALERTS_LIMIT} most recent below)"
    columns = REPORT_ALERT_COLUMNS if wide else ALERT_NARROW
    return _text_table(title, columns, ALERT_HEADERS, alerts[:ALERTS_LIMIT])
