"""`resend-imports sql "SELECT ..."`: one query of the destination, read-only, as a table.

So that the README's queries, and a user's own, run without a database client (the install
has neither the `duckdb` CLI nor `psql`), on the destination `sync` and `report` resolve
(`--destination`, `--duckdb`, `--dataset`). Nothing is written: DuckDB opens the file
read-only (beside other readers, not while a sync writes it), PostgreSQL runs the query in
a read-only session. Only these two: on another destination read-only cannot be promised.
A query the database refuses is one line in the database's words.
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, List, Sequence, Tuple

import dlt
from dlt.common.destination.exceptions import DestinationException

from resend_imports.errors import ResendConfigError, ResendError

from ..destinations import destination_name, target_of
from ..destinations.duckdb import holds_no_statement
from .views import database_words

READ_ONLY = ("duckdb", "postgres")  # the destinations this command opens read-only
NO_STATEMENT = "the query holds no statement (it is empty, or only comments and semicolons)"


class QueryFailedError(ResendError):
    """The database could not be opened for reading, or refused or failed the query."""


@dataclass(frozen=True)
class QueryResult:
    columns: Tuple[str, ...]  # empty for a statement that returns no rows
    rows: List[Tuple[Any, ...]]


def run_query(pipeline: dlt.Pipeline, query: str) -> QueryResult:
    """`query` on the pipeline's destination, read-only.

    Raises:
        ResendConfigError: a destination this command cannot open read-only, or one that
            is not there to be read (no DuckDB file, a PostgreSQL server that refuses).
        QueryFailedError: the database refused or failed the query, in its words; or the
            query holds no statement.
    """
    name = destination_name(pipeline)
    if name not in READ_ONLY:
        raise ResendConfigError(
            f"sql reads DuckDB and PostgreSQL only (read-only there); query {name or 'it'}"
            " with its own client"
        )
    target = target_of(pipeline)
    target.kind.check(target, reading=True)
    job_client: Any = pipeline.destination_client()
    if name == "duckdb":
        job_client.config.credentials.read_only = True
    try:
        with job_client.sql_client as client:
            if name == "postgres":
                client.native_connection.set_session(readonly=True)
            elif holds_no_statement(client.native_connection, query):
                raise QueryFailedError(f"{target.where}: {NO_STATEMENT}")
            with client.execute_query(query) as cursor:
                described = cursor.native_cursor.description
                columns = tuple(str(column[0]) for column in described or ())
                rows = [tuple(row) for row in cursor.fetchall()] if described else []
    except DestinationException as exc:
        raise QueryFailedError(f"{target.where}: {database_words(exc)}") from exc
    return QueryResult(columns, rows)


def format_result(result: QueryResult) -> str:
    """Columns two spaces apart, numbers right-aligned, NULL empty, times with a time zone in
    UTC (as `report`, whatever the session's zone), then the row count."""
    if not result.columns:
        return "(no rows: the statement returns none)"
    cells = [[_cell(value) for value in row] for row in result.rows]
    widths = [
        max([len(name), *(len(row[index]) for row in cells)])
        for index, name in enumerate(result.columns)
    ]
    right = [
        any(_is_number(row[index]) for row in result.rows)
        and all(value is None or _is_number(value) for value in (r[index] for r in result.rows))
        for index in range(len(result.columns))
    ]
    lines = [_line(result.columns, widths, right), _line(["-" * w for w in widths], widths, right)]
    lines += [_line(row, widths, right) for row in cells]
    count = len(result.rows)
    lines.append(f"({count} row{'' if count == 1 else 's'})")
    return "\n".join(lines)


def _line(cells: Sequence[str], widths: Sequence[int], right: Sequence[bool]) -> str:
    padded = [
        cell.rjust(width) if align else cell.ljust(width)
        for cell, width, align in zip(cells, widths, right, strict=True)
    ]
    return "  ".join(padded).rstrip()


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6f}".rstrip("0").rstrip(".")
    if isinstance(value, datetime):
        return (value.astimezone(UTC) if value.tzinfo else value).isoformat(sep=" ")
    return str(value)
