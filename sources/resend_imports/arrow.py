"""Arrow tables of listed imports, for runs that read to the end (first, full, filtered runs).

dlt writes Arrow tables straight to parquet (or csv for PostgreSQL's COPY), which
destinations load in bulk, instead of normalizing every row as a Python object. A batch of
the listing becomes a typed table in one pass of Arrow compute (`page_table`, the columnar
twin of `records.to_row`; `tests/test_columnar.py` proves them equal); only a batch with
something unusual in it (an unknown field, a malformed value) goes through `records.to_row`
one row at a time, which also names the import and field of a malformed value. A short
incremental run never imports this module, nor pyarrow.
"""

import os
from typing import Any, Dict, List, Mapping, Optional, Sequence

import dlt
import pyarrow as pa
import pyarrow.compute as pc

from .records import MICROSECOND_TIMESTAMP_PATTERN, Row
from .settings import COUNT_FIELDS, KNOWN_FIELDS

_ARROW_TYPES = {
    "text": pa.string(),
    "bigint": pa.int64(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}
TIMESTAMP = _ARROW_TYPES["timestamp"]
_WHOLE_TIMESTAMP = f"^{MICROSECOND_TIMESTAMP_PATTERN}$"


class _NeedsRowByRowError(Exception):
    """The page holds something the columnar path leaves to `records.to_row`."""


def fields(columns: Mapping[str, Mapping[str, Any]]) -> Dict[str, pa.Field]:
    """Arrow fields of dlt column hints (text, bigint, timestamp with time zone; nullability)."""
    return {
        name: pa.field(name, _ARROW_TYPES[hint["data_type"]], nullable=hint.get("nullable", True))
        for name, hint in columns.items()
    }


def to_arrow(rows: Sequence[Mapping[str, Any]], columns: Mapping[str, Any]) -> pa.Table:
    """Rows as one Arrow table of the hinted columns, typed as hinted.

    Fields Resend adds later are left out: rows that have them reach dlt as plain rows, so
    that dlt's normalizer, not a per-batch inference, decides their type.
    """
    typed = fields(columns)
    arrays = [pa.array([row.get(name) for row in rows], type=typed[name].type) for name in typed]
    return pa.Table.from_arrays(arrays, schema=pa.schema(list(typed.values())))


def page_table(items: Sequence[Any], columns: Mapping[str, Any]) -> Optional[pa.Table]:
    """One page of ContactImports as a table typed like `to_arrow(map(to_row, items))`.

    Returns None when the page needs the row-by-row path: an item that is not an object,
    a field this connector does not know, a missing or empty id, a timestamp in no format
    Resend uses, or counts that are not all integers.
    """
    if not items or any(type(item) is not dict for item in items):
        return None
    if not set().union(*items) <= KNOWN_FIELDS:
        return None
    try:
        raw = pa.Table.from_struct_array(pa.array(items))  # every key of every item
        arrays = {
            "id": _ids(raw),
            "object": _text(raw, "object"),
            "status": _text(raw, "status"),
            "created_at": _timestamps(raw, "created_at", required=True),
            "completed_at": _timestamps(raw, "completed_at", required=False),
            **_counts(raw),
            "deleted_at": pa.nulls(raw.num_rows, TIMESTAMP),
        }
    except (_NeedsRowByRowError, pa.ArrowException, OverflowError):
        return None
    schema = pa.schema(list(fields(columns).values()))
    return pa.Table.from_arrays([arrays[name] for name in schema.names], schema=schema)


def _ids(raw: pa.Table) -> pa.ChunkedArray:
    if "id" not in raw.column_names:
        raise _NeedsRowByRowError
    ids = raw.column("id")
    if not pa.types.is_string(ids.type) or ids.null_count or pc.any(pc.equal(ids, "")).as_py():
        raise _NeedsRowByRowError
    return ids


def _text(raw: pa.Table, name: str) -> Any:
    if name not in raw.column_names:
        return pa.nulls(raw.num_rows, pa.string())
    column = raw.column(name)
    if not (pa.types.is_string(column.type) or pa.types.is_null(column.type)):
        raise _NeedsRowByRowError
    return pc.cast(column, pa.string())


def _timestamps(raw: pa.Table, name: str, required: bool) -> Any:
    if name not in raw.column_names or pa.types.is_null(raw.column(name).type):
        if required:
            raise _NeedsRowByRowError
        return pa.nulls(raw.num_rows, TIMESTAMP)
    column = raw.column(name)
    if not pa.types.is_string(column.type) or (required and column.null_count):
        raise _NeedsRowByRowError
    if not pc.all(pc.match_substring_regex(column, _WHOLE_TIMESTAMP)).as_py():
        raise _NeedsRowByRowError
    return pc.cast(column, TIMESTAMP)  # ArrowInvalid on a date that does not exist


def _counts(raw: pa.Table) -> Dict[str, Any]:
    nothing = {f"counts__{name}": pa.nulls(raw.num_rows, pa.int64()) for name in COUNT_FIELDS}
    if "counts" not in raw.column_names or pa.types.is_null(raw.column("counts").type):
        return nothing
    counts = raw.column("counts")
    if not pa.types.is_struct(counts.type):
        raise _NeedsRowByRowError
    struct_type: pa.StructType = counts.type
    names = [struct_type.field(index).name for index in range(struct_type.num_fields)]
    if not set(names) <= set(COUNT_FIELDS):
        raise _NeedsRowByRowError
    arrays = dict(nothing)
    for index, name in enumerate(names):
        child = pc.struct_field(counts, [index])  # null where `counts` itself is null
        if not (pa.types.is_int64(child.type) or pa.types.is_null(child.type)):
            raise _NeedsRowByRowError
        arrays[f"counts__{name}"] = pc.cast(child, pa.int64())
    return arrays


def fingerprints(table: pa.Table) -> List[str]:
    """`records.fingerprint` of every row of a table of imports, in one pass."""
    parts = [table["status"], *(table[f"counts__{name}"] for name in COUNT_FIELDS)]
    joined = pc.binary_join_element_wise(
        *(pc.fill_null(pc.cast(part, pa.string()), "") for part in parts), "|"
    )
    return joined.to_pylist()  # type: ignore[no-any-return]


KNOWN_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string()),
        pa.field("status", pa.string()),
        *(pa.field(f"counts__{name}", pa.int64()) for name in COUNT_FIELDS),
        pa.field("deleted_at", TIMESTAMP),
    ]
)


def known_table(batch: Any) -> pa.Table:
    """Rows the table holds (`destination.copy_known`: an Arrow table or DB-API tuples) as
    one Arrow table of `KNOWN_SCHEMA`."""
    if isinstance(batch, pa.RecordBatch):
        batch = pa.Table.from_batches([batch])
    if isinstance(batch, pa.Table):
        return pa.Table.from_arrays(
            [pc.cast(batch.column(index), field.type) for index, field in enumerate(KNOWN_SCHEMA)],
            schema=KNOWN_SCHEMA,
        )
    columns = list(zip(*batch, strict=True)) if batch else [()] * len(KNOWN_SCHEMA)
    return pa.Table.from_arrays(
        [pa.array(column, field.type) for column, field in zip(columns, KNOWN_SCHEMA, strict=True)],
        schema=KNOWN_SCHEMA,
    )


def concat(tables: Sequence[pa.Table]) -> pa.Table:
    """Tables of the same hinted columns (`fields`) as one table."""
    return pa.concat_tables(tables)


def keep(table: pa.Table, kept: List[bool]) -> pa.Table:
    return table if all(kept) else table.filter(pa.array(kept))


def rows_at(table: pa.Table, indices: List[int]) -> List[Row]:
    return table.take(pa.array(indices, pa.int64())).to_pylist() if indices else []


def unknown_statuses(table: pa.Table, known: Sequence[str]) -> List[Any]:
    return sorted(set(pc.unique(table.column("status")).to_pylist()) - set(known), key=str)


def with_dlt_columns(table: pa.Table) -> pa.Table:
    """Adds dlt's `_dlt_load_id` and `_dlt_id`, as dlt adds them to object rows, so that the
    normalizer need not rewrite the file to add them."""
    load_id = dlt.current.load_package_state()["load_id"]
    rows = table.num_rows
    random_hex = os.urandom(8 * rows).hex()
    row_ids = [random_hex[i : i + 16] for i in range(0, 16 * rows, 16)]
    table = table.append_column("_dlt_load_id", pa.array([load_id] * rows, pa.string()))
    return table.append_column("_dlt_id", pa.array(row_ids, pa.string()))
