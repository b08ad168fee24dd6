"""What a column a person dropped from the written tables means for the run that finds it.

dlt adds a dropped column again only as it declares it, empty. That is enough where the
rows held nothing a run cannot read again, and wrong or impossible elsewhere:
- a column of `contact_imports` the rows held data in (`status`, `deleted_at`...): added
  again, and every import listed to fill it (`repair_owed`, kept in the state of every
  account until a run lists them whole, so that a filtered run or a failed account does not
  lose it);
- a column every row needs (NOT NULL: the key rows are matched by, such as `id` or
  `observation_key`, which cannot be worked out again from the other columns) in a table
  that holds rows: dlt cannot add it, and no listing can tell which row is which import, so
  the run stops before any request and says what a person can do;
- `account`: a table from before accounts gets it, its rows the account `default`; a table
  of several accounts gets it back from the account each row's import has in the other
  tables, or the run stops when some row's cannot be told.
"""

import logging
from typing import Any, Dict, List

from .accounts import ACCOUNT_COLUMN, DEFAULT_ACCOUNT
from .destination import DestinationReader
from .errors import TableStructureError, recreated_next_run
from .incremental import ACCOUNTS_KEY, SyncState
from .settings import TABLE_NAME
from .table_structure import (
    IMPORT_ID_OF,
    accounts_by_import,
    add_account_column,
    holds_rows,
    staging_columns,
    unattributed_rows,
)

logger = logging.getLogger("resend_imports")

_DLT_COLUMNS = ("_dlt_id", "_dlt_load_id")  # dlt's: a row needs neither to be matched


def refuse_lost_keys(reader: DestinationReader, schema: Any, lacking: Dict[str, List[str]]) -> None:
    """Stops the run when a table that holds rows lacks a column its rows cannot be without
    (NOT NULL in the schema): dlt would fail to add it, on every run."""
    for table, dropped in lacking.items():
        columns = schema.tables[table]["columns"]
        needed = [name for name in dropped if columns[name].get("nullable") is False]
        if not needed or not holds_rows(reader, table):
            continue
        raise TableStructureError(
            f"{reader.dataset}.{table} lacks {', '.join(needed)} (dropped by a person?),"
            " which every row needs and which cannot be worked out from its other columns:"
            f" restore {'it' if len(needed) == 1 else 'them'} (e.g. from a backup), or"
            f" drop the table: {recreated_next_run(table)}; nothing was requested or written"
        )


def owe_repair(
    reader: DestinationReader, stored: Dict[str, Any], lacking: Dict[str, List[str]]
) -> bool:
    """Records in the state of every account that loaded rows that the table must be listed
    whole, when `contact_imports` lacked a column its rows held data in. Returns whether
    any state took it (the runs say why in their one line; without one, nothing did)."""
    dropped = [name for name in lacking.get(TABLE_NAME, []) if name not in _DLT_COLUMNS]
    if not dropped:
        return False
    reason = (
        f"{reader.dataset}.{TABLE_NAME} lacked {', '.join(dropped)} (dropped by a person?),"
        " added again empty"
    )
    states = [stored, *stored.get(ACCOUNTS_KEY, {}).values()]
    owing = [state for state in states if not SyncState.load(state).is_empty]
    for state in owing:
        state["repair_owed"] = reason
    return bool(owing)


def add_accounts(
    reader: DestinationReader, columns: Dict[str, List[str]], stored: Dict[str, Any]
) -> None:
    """The `account` column of the written tables that lack it (see the module)."""
    written = list(IMPORT_ID_OF)
    lacking = [t for t in written if columns.get(t) and ACCOUNT_COLUMN not in columns[t]]
    if not lacking:
        return
    staging = staging_columns(reader, written)
    in_staging = [t for t in written if staging.get(t) and ACCOUNT_COLUMN not in staging[t]]
    named = [
        name
        for name, state in stored.get(ACCOUNTS_KEY, {}).items()
        if name != DEFAULT_ACCOUNT and not SyncState.load(state).is_empty
    ]
    if not named:  # loaded by one key only: `default`'s, as before accounts
        add_account_column(reader, lacking, in_staging)
        logger.info(
            "%s: the column %s added, the rows it held are the account %s's",
            ", ".join(f"{reader.dataset}.{table}" for table in lacking),
            ACCOUNT_COLUMN,
            DEFAULT_ACCOUNT,
        )
    else:
        if not SyncState.load(stored).is_empty:
            named.append(DEFAULT_ACCOUNT)
        _attribute(reader, columns, lacking, in_staging, sorted(named))
    for table in lacking:
        columns[table].append(ACCOUNT_COLUMN)


def _attribute(
    reader: DestinationReader,
    columns: Dict[str, List[str]],
    lacking: List[str],
    in_staging: List[str],
    accounts: List[str],
) -> None:
    """`account` given back to the rows of `lacking` tables of a table of several accounts:
    the account their import has in the other tables; the run stops when some row's cannot
    be told (no other table holds its import, or holds it under two accounts)."""
    sources = [t for t in IMPORT_ID_OF if columns.get(t) and t not in lacking]
    attributed = accounts_by_import(reader, sources)
    for table in lacking:
        unknown = unattributed_rows(reader, table, attributed)
        if unknown:
            raise TableStructureError(
                f"{reader.dataset}.{table} lacks {ACCOUNT_COLUMN} (dropped by a person?) and"
                f" holds the imports of the accounts {', '.join(accounts)}: {unknown:,} of its"
                " rows have an import no other table gives one account: restore the column"
                f" (e.g. from a backup), or drop the table: {recreated_next_run(table)};"
                " nothing was requested or written"
            )
    add_account_column(reader, lacking, in_staging, attributed)
    logger.warning(
        "%s lacked %s (dropped by a person?): added again, each row given the account its"
        " import has in %s",
        ", ".join(f"{reader.dataset}.{table}" for table in lacking),
        ACCOUNT_COLUMN,
        ", ".join(f"{reader.dataset}.{table}" for table in sources),
    )
