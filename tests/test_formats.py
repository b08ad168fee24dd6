"""The form in which rows reach dlt (`formats.hand_over`): one typed Arrow table for a large
batch, plain rows for a small one and for rows with a field the hints do not name, and the
same values in the table whichever form carried them."""

from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Dict, Iterator, List

import dlt
import duckdb
import pyarrow as pa

from resend_imports.formats import ARROW_MIN_ROWS, hand_over
from resend_imports.records import COLUMNS, to_row
from resend_imports_pipelines.simulator import ImportStore

COMPARED = ["id", "object", "status", "created_at", "completed_at", "counts__total"]


def _items(count: int) -> List[Dict[str, Any]]:
    """Listed imports in every timestamp style the simulator writes, open and finished."""
    store = ImportStore(count, seed=5, stuck=3)
    items: List[Dict[str, Any]] = []
    after = None
    while True:
        page, has_more = store.list(100, after)
        items += page
        if not has_more:
            return items[:count]
        after = page[-1]["id"]


def _load(
    tmp_path: Path, rows: List[Dict[str, Any]]
) -> tuple[List[type], duckdb.DuckDBPyConnection]:
    """Loads `hand_over(rows)` with a real pipeline into a DuckDB file; the kinds of items
    dlt was given, and a connection to the file."""
    kinds: List[type] = []

    @dlt.resource(
        name="contact_imports",
        primary_key="id",
        write_disposition={"disposition": "merge", "strategy": "delete-insert"},
        columns=COLUMNS,
    )
    def imports() -> Iterator[Any]:
        for item in hand_over(rows, COLUMNS):
            kinds.append(type(item))
            yield item

    database = tmp_path / "formats.duckdb"
    pipeline = dlt.pipeline(
        pipeline_name="formats",
        destination=dlt.destinations.duckdb(str(database)),
        dataset_name="resend",
        pipelines_dir=str(tmp_path / "pipelines"),
    )
    pipeline.run(imports())
    return kinds, duckdb.connect(str(database), read_only=True)


def _table(connection: duckdb.DuckDBPyConnection, columns: List[str]) -> List[tuple[Any, ...]]:
    connection.execute("SET TimeZone = 'UTC'")
    return connection.sql(
        f"SELECT {', '.join(columns)} FROM resend.contact_imports ORDER BY id"
    ).fetchall()


def _expected(rows: List[Dict[str, Any]], columns: List[str]) -> List[tuple[Any, ...]]:
    return sorted((tuple(row.get(c) for c in columns) for row in rows), key=lambda r: r[0])


def test_a_large_batch_is_one_typed_arrow_table_with_the_rows_values(tmp_path: Path) -> None:
    items = _items(ARROW_MIN_ROWS + 50)
    items[0]["created_at"] = "2026-05-15 20:32:37.5+02:00"  # another offset: stored in UTC
    rows = [to_row(item) for item in items]
    kinds, connection = _load(tmp_path, rows)
    assert kinds == [pa.Table]
    with connection:
        assert _table(connection, COMPARED) == _expected(rows, COMPARED)
        [(created,)] = connection.sql(
            "SELECT created_at FROM resend.contact_imports WHERE id = $1", params=[rows[0]["id"]]
        ).fetchall()
    assert created == datetime(2026, 5, 15, 18, 32, 37, 500000, tzinfo=UTC)


def test_a_small_batch_is_plain_rows(tmp_path: Path) -> None:
    rows = [to_row(item) for item in _items(ARROW_MIN_ROWS - 1)]
    kinds, connection = _load(tmp_path, rows)
    assert kinds == [list]
    with connection:
        assert _table(connection, COMPARED) == _expected(rows, COMPARED)


def test_rows_with_a_new_field_stay_plain_rows_for_dlt_to_type(tmp_path: Path) -> None:
    items = _items(ARROW_MIN_ROWS + 50)
    items[7]["priority"] = 3  # a field Resend may add
    rows = [to_row(item) for item in items]
    kinds, connection = _load(tmp_path, rows)
    assert kinds == [pa.Table, list]
    with connection:
        assert _table(connection, [*COMPARED, "priority"]) == _expected(
            rows, [*COMPARED, "priority"]
        )


def test_a_batch_whose_values_do_not_fit_the_hints_goes_as_plain_rows(tmp_path: Path) -> None:
    rows = [to_row(item) for item in _items(ARROW_MIN_ROWS + 50)]
    rows[3]["object"] = 7  # not text: dlt's normalizer makes a variant column
    kinds, connection = _load(tmp_path, rows)
    assert kinds == [list]
    with connection:
        assert len(_table(connection, ["id"])) == len(rows)
