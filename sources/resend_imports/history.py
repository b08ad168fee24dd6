"""Status-transition history: a row each time a sync sees an import in a new state.

The API only says where an import is now. The history table remembers each status (and each
change of counts) a sync observed, with when it was observed and the status before it. Its
rows are keyed by import, status and counts (`observation_key`) and loaded insert-only, so a
rerun never duplicates them. Its resolution is the sync schedule: states an import passed
through between two syncs are not seen.
"""

from datetime import datetime
from typing import Any, Dict, List, Optional, Sequence

from dlt.sources import DltResource

from .accounts import ACCOUNT_COLUMN, ACCOUNT_HINT
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
_COUNT_COLUMNS = tuple(f"counts__{name}" for name in COUNT_FIELDS)


def add_history_table(resource: DltResource) -> DltResource:
    """Declares the history table on the resource that feeds it (one load package for both)."""
    return add_insert_only_table(resource, HISTORY_TABLE, "observation_key", HISTORY_COLUMNS)


def add_insert_only_table(
    resource: DltResource, table: str, primary_key: str, columns: Any
) -> DltResource:
    """Declares `table`, fed by `resource` with `dlt.mark.with_table_name`, insert-only on
    the account and `primary_key`: a row whose key the table holds already for that account
    is not written again."""
    # a table variant starts as a copy of the resource's hints: drop its columns first
    resource.apply_hints(table_name=table, columns={}, create_table_variant=True)
    resource.apply_hints(
        table_name=table,
        write_disposition={"disposition": "merge", "strategy": "insert-only"},
        primary_key=[ACCOUNT_COLUMN, primary_key],
        columns={**columns, **ACCOUNT_HINT},
        create_table_variant=True,
    )
    return resource


def observation_key(import_id: str, printed: str, suffix: str = "") -> str:
    """Import, status and counts (`printed`: `records.fingerprint` of the row): the same state
    observed twice is the same history row. `suffix` keeps apart what must not merge with
    an ordinary observation: a return after a deletion, a deletion."""
    return f"{import_id}|{printed}{suffix}"


def history_row(
    row: Row, key: str, observed_at: datetime, previous_status: Optional[str]
) -> Dict[str, Any]:
    """The history row of an import (`row`: its row) observed in a new state."""
    history = {"observation_key": key, "import_id": row["id"], "status": row.get("status")}
    for column in _COUNT_COLUMNS:
        history[column] = row.get(column)
    history["observed_at"] = observed_at
    history["previous_status"] = previous_status
    return history


def deletion_rows(rows: Sequence[Row], deleted_at: datetime) -> List[Dict[str, Any]]:
    """History rows recording that these imports (their last rows) are gone from Resend."""
    history: List[Dict[str, Any]] = []
    for row in rows:
        gone = {**row, "status": DELETED_STATUS}
        key = observation_key(row["id"], fingerprint(gone), f"|at {deleted_at.isoformat()}")
        history.append(history_row(gone, key, deleted_at, row.get("status")))
    return history
