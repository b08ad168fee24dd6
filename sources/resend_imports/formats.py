"""The form in which a batch of rows reaches dlt: plain rows, or one typed Arrow table.

Every table the resource writes goes through `hand_over`, the one place that decides. dlt
normalizes plain rows one Python object at a time; an Arrow table it writes straight to
parquet (csv for PostgreSQL's COPY), which destinations load in bulk, for a fixed cost per
file. So a batch of `ARROW_MIN_ROWS` rows or more is handed over as one Arrow table typed
by the table's column hints, and a smaller one (a short incremental run) as plain rows.
Rows that carry a field the hints do not name (a field Resend added) stay plain rows whatever
the batch size, so that dlt's normalizer, not a per-batch inference, types that field the
same way on every run (a variant column when its type changes); so does a batch whose values
do not fit its hinted types.
"""

import os
from typing import Any, Dict, Final, Iterator, List, Mapping, Optional, Sequence

import dlt
import pyarrow as pa

from .records import Row

# Rows from which a batch is handed over as Arrow: below it, dlt's per-row work costs less
# than a parquet file (measured: see docs/performance.md).
ARROW_MIN_ROWS: Final = 200

_ARROW_TYPES: Final = {
    "text": pa.string(),
    "bigint": pa.int64(),
    "double": pa.float64(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}
TIMESTAMP: Final = _ARROW_TYPES["timestamp"]


def hand_over(
    rows: Sequence[Row], columns: Mapping[str, Any], table: Optional[str] = None
) -> Iterator[Any]:
    """`rows` as dlt items for `table` (None: the resource's own table), `columns` being
    that table's hints: one Arrow table of the rows it types, plain rows for the others."""
    if not rows:
        return
    named = columns.keys()
    typed: Sequence[Row] = rows
    plain: List[Row] = []
    if not set().union(*rows) <= named:
        typed = [row for row in rows if row.keys() <= named]
        plain = [row for row in rows if not row.keys() <= named]
    if len(typed) >= ARROW_MIN_ROWS:
        try:
            converted = arrow_table(typed, columns)
        except (pa.ArrowException, OverflowError):
            pass  # a value of another type than hinted: dlt's normalizer decides
        else:
            yield _for(table, with_dlt_columns(converted))
            typed = []
    if typed or plain:
        yield _for(table, [*typed, *plain])


def empty_table(columns: Mapping[str, Any], table: str) -> Any:
    """A dlt item with no rows that makes dlt create `table` with `columns`: dlt creates a
    table only once data comes for it, and an empty Arrow table counts as data (dlt's own
    `materialize_table_schema` fails on a merge table keyed by a column, dlt 1.31)."""
    return _for(table, with_dlt_columns(arrow_table([], columns)))


def _for(table: Optional[str], item: Any) -> Any:
    return item if table is None else dlt.mark.with_table_name(item, table)


def arrow_fields(columns: Mapping[str, Mapping[str, Any]]) -> Dict[str, pa.Field]:
    """Arrow fields of dlt column hints (text, bigint, double, timestamp with time zone;
    nullability)."""
    return {
        name: pa.field(name, _ARROW_TYPES[hint["data_type"]], nullable=hint.get("nullable", True))
        for name, hint in columns.items()
    }


def arrow_table(rows: Sequence[Mapping[str, Any]], columns: Mapping[str, Any]) -> pa.Table:
    """Rows as one Arrow table of the hinted columns, typed as hinted (a column a row lacks
    is NULL in it).

    Raises:
        pyarrow.ArrowException: a value that is not of its column's type.
    """
    typed = arrow_fields(columns)
    arrays = [pa.array([row.get(name) for row in rows], type=typed[name].type) for name in typed]
    return pa.Table.from_arrays(arrays, schema=pa.schema(list(typed.values())))


def with_dlt_columns(table: pa.Table) -> pa.Table:
    """Adds dlt's `_dlt_load_id` and `_dlt_id`, as dlt adds them to plain rows, so that the
    normalizer need not rewrite the file to add them."""
    load_id = dlt.current.load_package_state()["load_id"]
    rows = table.num_rows
    random_hex = os.urandom(8 * rows).hex()
    row_ids = [random_hex[i : i + 16] for i in range(0, 16 * rows, 16)]
    table = table.append_column("_dlt_load_id", pa.array([load_id] * rows, pa.string()))
    return table.append_column("_dlt_id", pa.array(row_ids, pa.string()))
