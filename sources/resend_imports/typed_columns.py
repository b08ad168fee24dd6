"""The table's columns read as the types a complete listing compares them as (`table_copy`),
and the columns whose type a person changed, for the messages of what they break.

A person may change a column's type (`counts__total` to text). Values that still convert
(the text `'1511'`) are compared as they are, on every destination: DuckDB hands them over
as Arrow columns, PostgreSQL as Python values. A value that does not convert stops the run
in one line that names the column, both types and what to do; Arrow tells which by the
type of its error. The views' arithmetic may refuse such a column on every run: their
failure names it (`retyped_columns`).
"""

from typing import Any, Optional, Sequence

import dlt
import pyarrow as pa
from dlt.common.destination.exceptions import DestinationException
from dlt.destinations.job_client_impl import SqlJobClientBase

from .errors import ColumnTypeError, recreated_next_run
from .names import column_name_in_schema, names_of
from .records import COLUMNS
from .settings import TABLE_NAME

_REFUSED = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError)


def as_declared(values: Any, field: pa.Field, table: str) -> pa.Array:
    """`values` of the column `field` names (an Arrow array, or a sequence of Python values)
    as `field`'s type; `table` names the table for the error."""
    if not isinstance(values, (pa.Array, pa.ChunkedArray)):
        try:
            return pa.array(values, field.type)
        except _REFUSED:
            values = _inferred(values, field, table)
    try:
        return values.cast(field.type)
    except _REFUSED as exc:
        raise _refused(table, field, values.type, exc) from exc


def _inferred(values: Sequence[Any], field: pa.Field, table: str) -> pa.Array:
    """The values as the type Arrow sees in them (a text column's strings)."""
    try:
        return pa.array(values)
    except _REFUSED as exc:
        raise _refused(table, field, None, exc) from exc


def _refused(
    table: str, field: pa.Field, held: Optional[pa.DataType], exc: Exception
) -> ColumnTypeError:
    expected = COLUMNS.get(field.name, {}).get("data_type") or str(field.type)
    shown = "values of mixed types" if held is None else f"{_type_name(held)} values"
    detail = (str(exc).strip().splitlines() or [""])[0][:200]
    return ColumnTypeError(
        f"{table}.{field.name} holds {shown} where the connector expects {expected} (its type"
        f" changed by a person?), and some do not convert ({detail}): put those right and"
        f" change the column back to {expected}, or drop the table:"
        f" {recreated_next_run(TABLE_NAME)}; nothing was loaded"
    )


def _type_name(held: pa.DataType) -> str:
    if pa.types.is_string(held) or pa.types.is_large_string(held):
        return "text"
    return str(held)


def retyped_columns(pipeline: dlt.Pipeline) -> Optional[str]:
    """The columns of the table whose type the destination's catalog gives otherwise than
    dlt's schema declares, in words (None: none, or the catalog cannot be read)."""
    try:
        with pipeline.destination_client() as client:
            if not isinstance(client, SqlJobClientBase):
                return None
            stored = dict(client.get_storage_tables([TABLE_NAME])).get(TABLE_NAME, {})
            table = names_of(client, pipeline.dataset_name).table(TABLE_NAME)
            capabilities = client.capabilities
    except DestinationException:
        return None
    held = {
        column_name_in_schema(capabilities, name): column.get("data_type")
        for name, column in stored.items()
    }
    declared = pipeline.default_schema.get_table_columns(TABLE_NAME)
    found = [
        f"{table}.{name} is {held[name]} where the connector declares"
        f" {column['data_type']} (its type changed by a person?)"
        for name, column in declared.items()
        if column.get("data_type") and held.get(name) not in (None, column["data_type"])
    ]
    return "; ".join(found) or None
