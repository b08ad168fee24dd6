"""What a run checks before it lists anything, and which kind of run that makes it.

A run checks what it is about to trust: the state committed with the table (it wins over the
local copy), that dlt's staging dataset is not a dataset of somebody else's, that the tables
it writes exist with their columns (those a person dropped are created again, or stop the
run where no run could fill them: `dropped_columns`), that the table still holds the live
imports the state counted, and that the API key is the one that loaded it. When the table
or the key say otherwise, the run says so in one line and lists every import to repair the
table in the same run.
"""

import logging
from copy import deepcopy
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Dict, List, Optional

from dlt.common.schema.utils import has_table_seen_data

from .alerts import ALERTS_TABLE
from .committed import TableHealth
from .destination import DestinationReader
from .dropped_columns import add_accounts, owe_repair, refuse_lost_keys
from .errors import ResendConfigError
from .incremental import SyncState
from .options import RunOptions
from .quarantine import QUARANTINE_TABLE
from .settings import HISTORY_TABLE, TABLE_NAME
from .table_structure import recreate_tables, rename_respelled, staging_dataset_of_its_own

logger = logging.getLogger("resend_imports")

FIRST = "first"
FULL = "full"
SCHEDULED = "scheduled full"
INCREMENTAL = "incremental"
FILTERED = "filtered"
REPAIR = "repair"  # the table does not hold what the state describes
ANOTHER_KEY = "another key"  # the API key is not the one that loaded the table

WRITTEN_TABLES = (TABLE_NAME, HISTORY_TABLE, ALERTS_TABLE, QUARANTINE_TABLE)


@dataclass
class Checked:
    """What the checks before the listing found."""

    empty_destination: bool = True  # no dataset or state: nothing to read
    readable: bool = False  # a SQL database: the table can be read and counted
    history_exists: bool = False  # the history table is there to be asked what it recorded
    alerts_exist: bool = False  # the alerts table is there to be asked which alerts it holds
    health: Optional[TableHealth] = None  # None: the destination cannot be read with SQL
    columns: Optional[List[str]] = None  # of the table (None: no SQL); `health` per account
    # a lakehouse's tables a person deleted, besides `contact_imports` (which a repair lists
    # whole): created by this run's load, with no rows if it has none for them
    to_write: List[str] = field(default_factory=list)
    repair: Optional[str] = None  # why the table does not hold what the state describes


def start_from_committed_state(reader: DestinationReader, stored: Dict[str, Any]) -> bool:
    """Makes the run continue from the state committed with the table it loads into.

    The local copy differs after a restored backup, a run on another dataset or destination
    under the same pipeline name, or a wiped working folder; the destination's wins, and a
    destination that holds none makes this a first run. Returns whether the destination holds
    nothing at all (no dataset or state table: no table to read either).
    """
    known, committed, empty = reader.committed_state()
    if not known or committed == dict(stored):
        return empty
    if stored or committed:
        logger.warning(
            "the incremental state in %s differs from the local copy (a restored backup,"
            " another dataset or a wiped folder): continuing from the destination's%s",
            reader.dataset,
            "" if committed else " (none: this is a first run)",
        )
    stored.clear()
    stored.update(deepcopy(committed))
    return empty


def check_destination(reader: DestinationReader, stored: Dict[str, Any]) -> Checked:
    """The state from the destination, then the staging dataset and the tables: those a
    person dropped are created again, those from before accounts get the `account` column;
    once for every account of the run (`for_account` counts each one's live imports)."""
    checked = Checked(start_from_committed_state(reader, stored), reader.readable)
    taken = staging_dataset_of_its_own(reader)
    if taken is not None:
        raise ResendConfigError(
            f"dlt would merge {reader.dataset} through the staging dataset {taken}, which is a"
            " dataset of its own (it holds dlt loads): its tables would be replaced. Set"
            " another staging_dataset_name_layout (e.g. DESTINATION__STAGING_DATASET_NAME_LAYOUT"
            "='%s_dlt_staging') or use another dataset name; nothing was written"
        )
    if not reader.readable:
        return checked
    schema: Any = reader.schema  # the job client's: loading the pipeline's again costs time
    dlt_tables = [schema.state_table_name, schema.loads_table_name] if schema else []
    # a bucket's: folders, put right before any load (`bucket_repairs.repair_local_bucket`)
    checked_dlt_tables = [] if reader.lakehouse else dlt_tables
    version_table = schema.version_table_name if schema else "_dlt_version"
    columns = reader.storage_columns([*WRITTEN_TABLES, *dlt_tables, version_table])
    missing: List[str] = []
    if columns.get(version_table) and schema is not None:
        # dlt creates a table only for a new schema version: one a person dropped from a
        # dataset it loaded before stays missing, and every later load fails on it
        missing = [
            name
            for name in [*WRITTEN_TABLES, *checked_dlt_tables]
            if not columns.get(name)
            and name in schema.tables
            and (name in dlt_tables or has_table_seen_data(schema.tables[name]))
        ]
    rename_respelled(reader, schema, columns)  # `"Counts__Total"`: before anything lacks
    # the `account` column (see `dropped_columns`), before the check of dropped columns (dlt
    # would add it NOT NULL to a table that holds rows, and fail)
    add_accounts(reader, columns, stored)
    # a column a person dropped stays missing too, until a load fails on it
    lacking: Dict[str, List[str]] = {}
    if columns.get(version_table) and schema is not None:
        for name in WRITTEN_TABLES:
            if columns.get(name) and name in schema.tables:
                dropped = _dropped_columns(schema.tables[name], columns[name])
                if dropped:
                    lacking[name] = dropped
    refuse_lost_keys(reader, schema, lacking)
    owed = [TABLE_NAME] if owe_repair(reader, stored, lacking) else []
    if owed:
        lacking.pop(TABLE_NAME)  # each account's run says it, with its repair
    if missing:
        logger.warning(
            "%s missing from %s (dropped or renamed by a person?): created again",
            ", ".join(missing) + (" is" if len(missing) == 1 else " are"),
            reader.dataset,
        )
    for name, dropped in lacking.items():
        logger.warning(
            "%s.%s lacks %s (dropped by a person?): added again",
            reader.dataset,
            name,
            ", ".join(dropped),
        )
    if missing or lacking or owed:
        recreate_tables(reader, [*missing, *lacking, *owed])
    # a database's are there again, empty; a lakehouse's only once this run's load wrote them
    recreated = [] if reader.lakehouse else missing
    if reader.lakehouse:
        checked.to_write = [name for name in missing if name != TABLE_NAME]
    checked.columns = columns.get(TABLE_NAME, [])
    checked.history_exists = bool(columns.get(HISTORY_TABLE)) or HISTORY_TABLE in recreated
    checked.alerts_exist = bool(columns.get(ALERTS_TABLE)) or ALERTS_TABLE in recreated
    return checked


def for_account(checked: Checked, reader: DestinationReader) -> Checked:
    """The checks of one account's run: the live imports the table holds of its account
    (`reader.account`)."""
    if checked.columns is None:
        return checked
    return replace(checked, health=reader.table_health(checked.columns))


def _dropped_columns(table: Any, stored: List[str]) -> List[str]:
    """The columns of the schema's `table` (those dlt creates: typed) the destination lacks."""
    return [
        name
        for name, column in table["columns"].items()
        if column.get("data_type") and name.lower() not in stored
    ]


def repair_reason(previous: SyncState, checked: Checked, dataset: str) -> Optional[str]:
    """Why the table does not hold what the state describes, or None."""
    health = checked.health
    if previous.is_empty or health is None:
        return None
    if previous.repair_owed is not None:
        return previous.repair_owed
    table = f"{dataset}.{TABLE_NAME}"
    if health.live is None:
        return f"{table} was missing (dropped or renamed by a person?)"
    if previous.live_imports is not None and health.live < previous.live_imports:
        return (
            f"{table} holds {health.live:,} live imports where the last run left"
            f" {previous.live_imports:,} (rows deleted, or the table replaced, by a person?)"
        )
    return None


def mode_of(
    previous: SyncState,
    options: RunOptions,
    now: datetime,
    key_changed: bool,
    repair: Optional[str],
) -> str:
    if options.status is not None:
        if key_changed:
            raise ResendConfigError(
                "the API key is not the one that loaded this table, and a filtered run cannot"
                " tell another account from a rotated key: run an unfiltered sync first (it"
                " lists every import and retires what this key's account does not have)"
            )
        return FILTERED
    if previous.is_empty:
        return FIRST
    if key_changed:
        return ANOTHER_KEY
    if repair is not None:
        return REPAIR
    if options.full_refresh:
        return FULL
    if previous.complete_listing_due(now, options.full_refresh_every_days):
        return SCHEDULED
    return INCREMENTAL


def say_why(mode: str, repair: Optional[str], dataset: str) -> None:
    if mode == REPAIR:
        logger.warning("%s: listing every import to repair it", repair)
    elif mode == FILTERED and repair is not None:
        logger.warning(
            "%s: a filtered run lists too little to repair it; the next unfiltered sync lists"
            " every import to do so",
            repair,
        )
    elif mode == ANOTHER_KEY:
        logger.warning(
            "the API key is not the one that loaded %s.%s (another Resend account, or a"
            " rotated key): listing every import; if the listing shares none with the table,"
            " the table's imports are another account's and are marked deleted without a"
            " request each",
            dataset,
            TABLE_NAME,
        )
