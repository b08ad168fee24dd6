"""`resend-imports report`: the daily summary and the worst imports, read from the destination."""

import csv
import io
import json
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Dict, List, Sequence

import dlt
from dlt.common.destination.exceptions import (
    DestinationTerminalException,
    DestinationUndefinedEntity,
)

from sources.resend.errors import ResendConfigError
from sources.resend.settings import TABLE_NAME

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

Table = List[Dict[str, Any]]


def read_report(pipeline: dlt.Pipeline, days: int) -> Dict[str, Table]:
    """The `days` most recent days with imports, the worst imports among them, and how many
    imports are marked deleted (left out of the other two).

    Creates the views first when the table was synced without them (an older version).
    """
    try:
        return _query_report(pipeline, days)
    except DestinationUndefinedEntity:
        create_views(pipeline)
        return _query_report(pipeline, days)


def _query_report(pipeline: dlt.Pipeline, days: int) -> Dict[str, Table]:
    with pipeline.sql_client() as client:
        daily_view = client.make_qualified_table_name(DAILY_VIEW)
        enriched_view = client.make_qualified_table_name(ENRICHED_VIEW)
        if not client.has_dataset():
            raise ResendConfigError(
                f"no dataset {pipeline.dataset_name!r} in the destination: run"
                " `resend-imports sync` first"
            )
        daily_rows = client.execute_sql(
            f"SELECT {', '.join(DAILY_COLUMNS)} FROM {daily_view} ORDER BY day DESC LIMIT {days}"
        )
        daily = [dict(zip(DAILY_COLUMNS, row, strict=True)) for row in daily_rows or []]
        worst: Table = []
        if daily:
            oldest_day = daily[-1]["day"]
            worst_rows = client.execute_sql(
                f"SELECT {', '.join(WORST_COLUMNS)} FROM {enriched_view}"
                " WHERE is_terminal AND failure_rate IS NOT NULL AND created_at >= %s"
                f" ORDER BY failure_rate DESC, created_at DESC LIMIT {WORST_LIMIT}",
                datetime.combine(oldest_day, datetime.min.time()).isoformat() + "+00:00",
            )
            worst = [dict(zip(WORST_COLUMNS, row, strict=True)) for row in worst_rows or []]
        table = client.make_qualified_table_name(TABLE_NAME)
        try:
            deleted_rows = client.execute_sql(
                f"SELECT count(*) FROM {table} WHERE deleted_at IS NOT NULL"
            )
        except DestinationTerminalException:  # a table no sync of this version wrote yet
            deleted_rows = [(0,)]
        deleted = [{"deleted_imports": deleted_rows[0][0] if deleted_rows else 0}]
    return {"daily": daily, "worst_imports": worst, "deleted": deleted}


def _plain(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).isoformat()
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def _cell(value: Any, for_terminal: bool = False) -> str:
    if for_terminal and isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    value = _plain(value)
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _text_table(title: str, columns: Sequence[str], rows: Table) -> str:
    cells = [[_cell(row[c], for_terminal=True) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = [title, "  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    if not rows:
        lines.append("(none)")
    return "\n".join(lines)


def render(report: Dict[str, Table], output_format: str) -> str:
    """The report as a terminal table, CSV (two blocks, a blank line apart) or JSON."""
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
        ):
            buffer = io.StringIO()
            writer = csv.writer(buffer, lineterminator="\n")
            writer.writerow(columns)
            writer.writerows([[_cell(row[c]) for c in columns] for row in report[key]])
            blocks.append(buffer.getvalue())
        return "\n".join(blocks).rstrip("\n")
    return "\n\n".join(
        [
            _text_table("Contact imports per day (UTC)", DAILY_COLUMNS, report["daily"]),
            _text_table("Worst imports by failure rate", WORST_COLUMNS, report["worst_imports"]),
            f"Imports deleted in Resend (kept in the table with deleted_at, left out above):"
            f" {report['deleted'][0]['deleted_imports']}",
        ]
    )
