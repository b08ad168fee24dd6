"""Status-transition history: a row each time a sync sees an import in a new state.

The API only says where an import is now. The history table remembers each status (and each
change of counts) a sync observed, with when it was observed and the status before it. Its
rows are keyed by import, status and counts and loaded insert-only, so a rerun never
duplicates them. Its resolution is the sync schedule: states an import passed through
between two syncs are not seen.
"""

from datetime import datetime
from typing import Any, Dict, List, Optional

import dlt
from dlt.extract.items import DataItemWithMeta
from dlt.sources import DltResource

from .records import Row, fingerprint
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


def observation(row: Row, previous_status: Optional[str], observed_at: datetime) -> Dict[str, Any]:
    """One history row: the import as this sync saw it."""
    return {
        "observation_key": f"{row['id']}|{fingerprint(row)}",
        "import_id": row["id"],
        "status": row.get("status"),
        **{f"counts__{name}": row.get(f"counts__{name}") for name in COUNT_FIELDS},
        "observed_at": observed_at,
        "previous_status": previous_status,
    }


def to_history_table(observations: List[Dict[str, Any]]) -> DataItemWithMeta:
    """Marks rows for the history table, from the same resource as `contact_imports`."""
    return dlt.mark.with_table_name(observations, HISTORY_TABLE)
