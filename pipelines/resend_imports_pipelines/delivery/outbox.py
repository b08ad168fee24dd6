"""The outbox as delivery sees it: the source's `contact_import_alerts`, plus the delivery
marks declared here (`delivered_at` and one column per channel), read and marked with SQL.

The source raises alerts; delivering them is this package's job, so the marks are declared
here, as hints on the source's alerts table before each run: the stored table is the same
whichever declares them, and a new channel changes nothing outside this package
(`resend_imports_pipelines.delivery`).
"""

from datetime import datetime
from typing import Any, Dict, List, Sequence

from dlt.extract import DltSource

from resend_imports.alerts import ALERTS_TABLE
from resend_imports.settings import TABLE_NAME

from .channels import DELIVERED_AT, MARKS, PAYLOAD_COLUMNS


def declare_marks(source: DltSource) -> DltSource:
    """The delivery marks added to the alerts table of `source` (after its own columns)."""
    resource = source.resources[TABLE_NAME]
    resource.apply_hints(table_name=ALERTS_TABLE, columns=MARKS, create_table_variant=True)
    return source


def waiting(client: Any, table: str) -> int:
    """Alerts not yet delivered to every configured channel."""
    rows = client.execute_sql(f"SELECT count(*) FROM {table} WHERE {DELIVERED_AT} IS NULL")
    return int(rows[0][0])


def undelivered(client: Any, table: str, column: str) -> List[Dict[str, Any]]:
    """The alerts the channel marked by `column` does not have, oldest first."""
    names = ", ".join(PAYLOAD_COLUMNS)
    rows = client.execute_sql(
        f"SELECT {names} FROM {table} WHERE {DELIVERED_AT} IS NULL AND {column} IS NULL"
        " ORDER BY raised_at, alert_key"
    )
    return [dict(zip(PAYLOAD_COLUMNS, row, strict=True)) for row in rows or []]


def mark(client: Any, table: str, column: str, keys: List[str], accepted_at: datetime) -> None:
    """The channel's mark on these alerts: when it accepted them."""
    marks = ", ".join(["%s"] * len(keys))
    client.execute_sql(
        f"UPDATE {table} SET {column} = %s WHERE alert_key IN ({marks})", accepted_at, *keys
    )


def mark_delivered(client: Any, table: str, columns: Sequence[str], now: datetime) -> None:
    """`delivered_at` on the alerts every channel of `columns` has."""
    done = " AND ".join(f"{column} IS NOT NULL" for column in columns)
    client.execute_sql(
        f"UPDATE {table} SET {DELIVERED_AT} = %s WHERE {DELIVERED_AT} IS NULL AND {done}", now
    )
