"""SQL views over `contact_imports`, created after each successful sync on any SQL destination.

The views leave out imports marked deleted (`deleted_at` set): they describe what Resend has.

The views are written once, in DuckDB's dialect, and translated with sqlglot (which dlt
ships) into the destination's dialect. Table names are filled in after translation, with
the destination's own quoting and qualification.
"""

from typing import Dict, List

import dlt

from sources.resend_imports.settings import TABLE_NAME, TERMINAL_STATUSES

ENRICHED_VIEW = "contact_imports_enriched"
DAILY_VIEW = "contact_imports_daily"

_SOURCE = "__resend_source_table__"
_ENRICHED = "__resend_enriched_view__"
_TERMINAL = ", ".join(f"'{status}'" for status in sorted(TERMINAL_STATUSES))

VIEW_SQL: Dict[str, str] = {
    ENRICHED_VIEW: f"""
        SELECT *,
            date_diff('microsecond', created_at, completed_at) / 1000000.0 AS duration_seconds,
            CAST(counts__failed AS DOUBLE) / NULLIF(counts__total, 0) AS failure_rate,
            status IN ({_TERMINAL}) AS is_terminal
        FROM {_SOURCE}
        WHERE deleted_at IS NULL
    """,
    DAILY_VIEW: f"""
        SELECT
            CAST(created_at AT TIME ZONE 'UTC' AS DATE) AS day,
            COUNT(*) AS imports,
            SUM(CASE WHEN status = 'completed' THEN 1 ELSE 0 END) AS completed_imports,
            SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END) AS failed_imports,
            SUM(CASE WHEN is_terminal THEN 0 ELSE 1 END) AS open_imports,
            SUM(counts__total) AS rows_total,
            SUM(counts__created) AS rows_created,
            SUM(counts__updated) AS rows_updated,
            SUM(counts__skipped) AS rows_skipped,
            SUM(counts__failed) AS rows_failed,
            MEDIAN(duration_seconds) AS median_duration_seconds
        FROM {_ENRICHED}
        GROUP BY CAST(created_at AT TIME ZONE 'UTC' AS DATE)
    """,
}


def view_statements(pipeline: dlt.Pipeline) -> List[str]:
    """DROP and CREATE statements of every view, in the destination's dialect."""
    import sqlglot  # only when the views change: keeps the start-up of a run short

    destination = pipeline.destination
    assert destination is not None, "the pipeline has no destination"
    dialect = destination.capabilities().sqlglot_dialect or "duckdb"
    creates: List[str] = []
    drops: List[str] = []
    with pipeline.sql_client() as client:
        names = {
            _SOURCE: client.make_qualified_table_name(TABLE_NAME),
            _ENRICHED: client.make_qualified_table_name(ENRICHED_VIEW),
        }
        for view, select in VIEW_SQL.items():
            body = sqlglot.transpile(select, read="duckdb", write=dialect)[0]
            for placeholder, qualified in names.items():
                body = body.replace(placeholder, qualified)
            qualified_view = client.make_qualified_table_name(view)
            drops.insert(0, f"DROP VIEW IF EXISTS {qualified_view}")  # dependents first
            creates.append(f"CREATE VIEW {qualified_view} AS {body}")
    statements = drops + creates
    return statements


def create_views(pipeline: dlt.Pipeline) -> None:
    """(Re)creates the views; idempotent, and up to date with new columns of the table."""
    statements = view_statements(pipeline)
    with pipeline.sql_client() as client:
        with client.begin_transaction():
            for statement in statements:
                client.execute_sql(statement)
