"""Arrow tables for dlt's bulk path: imported only by runs that read many rows.

dlt writes Arrow tables straight to parquet, which DuckDB and other destinations load in
bulk, instead of normalizing every row as a Python object. A short incremental run skips
this module, and the import of pyarrow with it.
"""

import os
from typing import Any, Dict, Mapping, Optional, Sequence

import dlt
import pyarrow as pa
import pyarrow.compute as pc

from .history import HISTORY_COLUMNS, Observations
from .settings import COUNT_FIELDS

_ARROW_TYPES = {
    "text": pa.string(),
    "bigint": pa.int64(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}


def fields(columns: Mapping[str, Mapping[str, Any]]) -> Dict[str, pa.Field]:
    """Arrow fields of dlt column hints (text, bigint, timestamp with time zone; nullability)."""
    return {
        name: pa.field(name, _ARROW_TYPES[hint["data_type"]], nullable=hint.get("nullable", True))
        for name, hint in columns.items()
    }


def to_arrow(rows: Sequence[Mapping[str, Any]], columns: Mapping[str, Any]) -> pa.Table:
    """Rows as one Arrow table: hinted columns typed, fields Resend adds later inferred."""
    typed = fields(columns)
    extra = sorted({key for row in rows for key in row.keys()} - typed.keys())
    arrays = [pa.array([row.get(name) for row in rows], type=typed[name].type) for name in typed]
    arrays += [pa.array([row.get(name) for row in rows]) for name in extra]
    schema = pa.schema(
        [
            *typed.values(),
            *(pa.field(name, a.type) for name, a in zip(extra, arrays[len(typed) :], strict=True)),
        ]
    )
    return pa.Table.from_arrays(arrays, schema=schema)


def with_dlt_columns(table: pa.Table) -> pa.Table:
    """Adds dlt's `_dlt_load_id` and `_dlt_id`, as dlt adds them to object rows, so that the
    normalizer need not rewrite the file to add them."""
    load_id = dlt.current.load_package_state()["load_id"]
    rows = table.num_rows
    random_hex = os.urandom(8 * rows).hex()
    row_ids = [random_hex[i : i + 16] for i in range(0, 16 * rows, 16)]
    table = table.append_column("_dlt_load_id", pa.array([load_id] * rows, pa.string()))
    return table.append_column("_dlt_id", pa.array(row_ids, pa.string()))


def history_table(imports: pa.Table, observations: Observations) -> Optional[pa.Table]:
    """History rows for the observed rows of `imports` (the batch, in order), or None."""
    if not any(observations.observed):
        return None
    seen = imports.filter(pa.array(observations.observed))
    chosen = [index for index, observed in enumerate(observations.observed) if observed]
    counts = [seen[f"counts__{name}"] for name in COUNT_FIELDS]
    key = pc.binary_join_element_wise(
        *(
            pc.fill_null(pc.cast(part, pa.string()), "")
            for part in [seen["id"], seen["status"], *counts]
        ),
        "|",
    )
    typed = fields(HISTORY_COLUMNS)
    columns: Dict[str, Any] = {
        "observation_key": key,
        "import_id": seen["id"],
        "status": seen["status"],
        **{f"counts__{name}": part for name, part in zip(COUNT_FIELDS, counts, strict=True)},
        "observed_at": pa.array(
            [observations.observed_at[i] for i in chosen], typed["observed_at"].type
        ),
        "previous_status": pa.array([observations.previous_status[i] for i in chosen], pa.string()),
    }
    schema = pa.schema(list(typed.values()))
    return pa.Table.from_arrays([columns[name] for name in schema.names], schema=schema)
