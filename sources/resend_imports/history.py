"""Status-transition history: a row each time a sync sees an import in a new state.

The API only says where an import is now. The history table remembers each status (and each
change of counts) a sync observed, with when it was observed and the status before it. Its
rows are keyed by import, status and counts and loaded insert-only, so a rerun never
duplicates them. Its resolution is the sync schedule: states an import passed through
between two syncs are not seen.
"""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Dict, List, Optional, Sequence

import dlt
from dlt.extract.items import DataItemWithMeta
from dlt.sources import DltResource

from .known import Comparison
from .records import Row, fingerprint
from .settings import COUNT_FIELDS, DELETED_STATUS, HISTORY_TABLE

HISTORY_COLUMNS: Any = {
    "observation_key": {"data_type": "text", "nullable": False},
    "import_id": {"data_type": "text", "nullable": False},
    "status": {"data_type": "text"},
    **{f"counts__{name}": {"data_type": "bigint"} for name in COUNT_FIELDS},
    "observed_at": {"data_type": "timestamp", "timezone": True, "nullable": False},
    "previous_status": {"data_type": "text"},
}


def add_history_table(resource: DltResource) -> DltResource:
    """Declares the history table on the resource that feeds it (one load package for both)."""
    return add_insert_only_table(resource, HISTORY_TABLE, "observation_key", HISTORY_COLUMNS)


def add_insert_only_table(
    resource: DltResource, table: str, primary_key: str, columns: Any
) -> DltResource:
    """Declares `table`, fed by `resource` with `dlt.mark.with_table_name`, insert-only on
    `primary_key`: a row whose key the table holds already is not written again."""
    # a table variant starts as a copy of the resource's hints: drop its columns first
    resource.apply_hints(table_name=table, columns={}, create_table_variant=True)
    resource.apply_hints(
        table_name=table,
        write_disposition={"disposition": "merge", "strategy": "insert-only"},
        primary_key=primary_key,
        columns=columns,
        create_table_variant=True,
    )
    return resource


@dataclass
class Observations:
    """Which rows of a batch a sync saw in a new state, and in which state before."""

    observed: List[bool] = field(default_factory=list)
    previous_status: List[Optional[str]] = field(default_factory=list)
    observed_at: List[datetime] = field(default_factory=list)
    # appended to the observation key: keeps an import's return after a deletion apart
    key_suffix: List[str] = field(default_factory=list)
    # the fingerprint the table held before (its status before a deletion), for the alerts
    before: List[Optional[str]] = field(default_factory=list)

    def extend(self, comparison: Comparison, observed_at: List[datetime]) -> None:
        self.observed += comparison.observed
        self.previous_status += comparison.previous_status
        self.observed_at += observed_at
        self.key_suffix += comparison.key_suffix
        self.before += comparison.before

    def chosen(self) -> List[int]:
        """Positions of the observed rows."""
        return [index for index, observed in enumerate(self.observed) if observed]


# The history rows of a batch, in two forms that `tests/test_columnar.py` proves equal: plain
# rows (short incremental runs) and an Arrow table (runs that read many rows).


def history_rows(batch: Sequence[Row], observations: Observations) -> List[Dict[str, Any]]:
    """History rows for the observed rows of `batch` (the same rows, in order)."""
    return [
        {
            "observation_key": observation_key(batch[i]) + observations.key_suffix[i],
            "import_id": batch[i]["id"],
            "status": batch[i].get("status"),
            **{f"counts__{name}": batch[i].get(f"counts__{name}") for name in COUNT_FIELDS},
            "observed_at": observations.observed_at[i],
            "previous_status": observations.previous_status[i],
        }
        for i in observations.chosen()
    ]


def history_table(imports: Any, observations: Observations) -> Any:
    """`history_rows` as one Arrow table (None when no row was observed)."""
    import pyarrow as pa

    from .arrow import fields, fingerprints

    chosen = observations.chosen()
    if not chosen:
        return None
    seen = imports.filter(pa.array(observations.observed))
    keys = [
        f"{import_id}|{printed}{observations.key_suffix[i]}"
        for import_id, printed, i in zip(
            seen["id"].to_pylist(), fingerprints(seen), chosen, strict=True
        )
    ]
    typed = fields(HISTORY_COLUMNS)
    columns: Dict[str, Any] = {
        "observation_key": pa.array(keys, pa.string()),
        "import_id": seen["id"],
        "status": seen["status"],
        **{f"counts__{name}": seen[f"counts__{name}"] for name in COUNT_FIELDS},
        "observed_at": pa.array(
            [observations.observed_at[i] for i in chosen], typed["observed_at"].type
        ),
        "previous_status": pa.array([observations.previous_status[i] for i in chosen], pa.string()),
    }
    schema = pa.schema(list(typed.values()))
    return pa.Table.from_arrays([columns[name] for name in schema.names], schema=schema)


def observation_key(row: Row) -> str:
    """Import, status and counts: the same state observed twice is the same history row."""
    return f"{row['id']}|{fingerprint(row)}"


def deletion_rows(rows: Sequence[Row], deleted_at: datetime) -> List[Dict[str, Any]]:
    """History rows recording that these imports (their last rows) are gone from Resend."""
    return [
        {
            "observation_key": observation_key({**row, "status": DELETED_STATUS})
            + f"|at {deleted_at.isoformat()}",
            "import_id": row["id"],
            "status": DELETED_STATUS,
            **{f"counts__{name}": row.get(f"counts__{name}") for name in COUNT_FIELDS},
            "observed_at": deleted_at,
            "previous_status": row.get("status"),
        }
        for row in rows
    ]


def to_history_table(item: Any) -> DataItemWithMeta:
    """Marks rows (a list or an Arrow table) for the history table, from the same resource."""
    return dlt.mark.with_table_name(item, HISTORY_TABLE)
