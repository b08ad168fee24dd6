"""Status-transition history: a row each time a sync sees an import in a new state.

The API only says where an import is now. The history table remembers each status (and each
change of counts) a sync observed, with when it was observed and the status before it. Its
rows are keyed by import, status and counts and loaded insert-only, so a rerun never
duplicates them. Its resolution is the sync schedule: states an import passed through
between two syncs are not seen.
"""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, List, Optional

import dlt
import pyarrow as pa
import pyarrow.compute as pc
from dlt.extract.items import DataItemWithMeta
from dlt.sources import DltResource

from .records import arrow_fields
from .settings import COUNT_FIELDS

HISTORY_TABLE = "contact_import_status_history"

HISTORY_COLUMNS: Any = {
    "observation_key": {"data_type": "text", "nullable": False},
    "import_id": {"data_type": "text", "nullable": False},
    "status": {"data_type": "text"},
    **{f"counts__{name}": {"data_type": "bigint"} for name in COUNT_FIELDS},
    "observed_at": {"data_type": "timestamp", "timezone": True, "nullable": False},
    "previous_status": {"data_type": "text"},
}
_ARROW_FIELDS = arrow_fields(HISTORY_COLUMNS)
_TIMESTAMP = _ARROW_FIELDS["observed_at"].type


def add_history_table(resource: DltResource) -> DltResource:
    """Declares the history table on the resource that feeds it (one load package for both)."""
    # a table variant starts as a copy of the resource's hints: drop its columns first
    resource.apply_hints(table_name=HISTORY_TABLE, columns={}, create_table_variant=True)
    resource.apply_hints(
        table_name=HISTORY_TABLE,
        write_disposition={"disposition": "merge", "strategy": "insert-only"},
        primary_key="observation_key",
        columns=HISTORY_COLUMNS,
        create_table_variant=True,
    )
    return resource


@dataclass
class Observations:
    """Which rows of a batch a sync saw in a new state, and in which state before."""

    observed: List[bool] = field(default_factory=list)
    previous_status: List[Optional[str]] = field(default_factory=list)
    observed_at: List[datetime] = field(default_factory=list)

    def add(self, observed: bool, previous_status: Optional[str], observed_at: datetime) -> None:
        self.observed.append(observed)
        self.previous_status.append(previous_status)
        self.observed_at.append(observed_at)

    def to_history_table(self, imports: pa.Table) -> Optional[DataItemWithMeta]:
        """History rows for the observed rows of `imports` (the batch, in order), or None."""
        if not any(self.observed):
            return None
        mask = pa.array(self.observed)
        seen = imports.filter(mask)
        chosen = [index for index, observed in enumerate(self.observed) if observed]
        counts = [seen[f"counts__{name}"] for name in COUNT_FIELDS]
        key_parts = [seen["id"], seen["status"], *counts]
        key = pc.binary_join_element_wise(
            *(pc.fill_null(pc.cast(part, pa.string()), "") for part in key_parts), "|"
        )
        columns = {
            "observation_key": key,
            "import_id": seen["id"],
            "status": seen["status"],
            **{f"counts__{name}": part for name, part in zip(COUNT_FIELDS, counts, strict=True)},
            "observed_at": pa.array([self.observed_at[i] for i in chosen], _TIMESTAMP),
            "previous_status": pa.array([self.previous_status[i] for i in chosen], pa.string()),
        }
        schema = pa.schema(list(_ARROW_FIELDS.values()))
        table = pa.Table.from_arrays([columns[name] for name in schema.names], schema=schema)
        return dlt.mark.with_table_name(table, HISTORY_TABLE)
