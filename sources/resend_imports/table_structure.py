"""What the checks before a listing do to the destination's structure, through the run's
`DestinationReader`: whether dlt's staging dataset is somebody else's dataset, and the
repairs dlt would not make itself (a table or column a person dropped created again, the
`account` column added to tables from before accounts, or given back from the other tables).

A lakehouse (Delta, Iceberg) needs none of these: it merges in place and its next load
writes a table whole.
"""

import logging
from typing import Any, Dict, List, Optional

from .accounts import ACCOUNT_COLUMN, DEFAULT_ACCOUNT
from .alerts import ALERTS_TABLE
from .destination import DestinationReader
from .quarantine import QUARANTINE_TABLE
from .settings import HISTORY_TABLE, TABLE_NAME

logger = logging.getLogger("resend_imports")

# the column of each written table that names its import: the account of a row is the
# account its import has in another table
IMPORT_ID_OF = {
    TABLE_NAME: "id",
    HISTORY_TABLE: "import_id",
    ALERTS_TABLE: "import_id",
    QUARANTINE_TABLE: "import_id",
}


def staging_dataset_of_its_own(reader: DestinationReader) -> Optional[str]:
    """The name of dlt's staging dataset for this dataset when it is a dataset of its own
    (it holds dlt's load records): a merge would replace its tables with this run's
    staging copies. None when it is free or only ever held staging copies."""
    client = reader.client
    if not reader.readable or reader.lakehouse:
        return None
    loads = client.schema.loads_table_name

    def loads_in_staging() -> Dict[str, Any]:
        with client.with_staging_dataset():
            return dict(client.get_storage_tables([loads]))

    if reader.read("the staging dataset", loads_in_staging).get(loads):
        name: str = client.sql_client.staging_dataset_name
        return name
    return None


def staging_columns(reader: DestinationReader, tables: List[str]) -> Dict[str, List[str]]:
    """The columns each of `tables` has in dlt's staging dataset (none: not there)."""
    client = reader.client
    if not reader.readable or reader.lakehouse:
        return {}

    def read() -> Dict[str, Any]:
        with client.with_staging_dataset():
            return dict(client.get_storage_tables(tables))

    found = reader.read("the staging dataset", read)
    return {name: [c.lower() for c in found.get(name, {})] for name in tables}


def add_account_column(
    reader: DestinationReader,
    tables: List[str],
    staging: List[str],
    attributed: Optional[str] = None,
) -> None:
    """Adds `account` to `tables`, and to their copies in dlt's staging dataset (`staging`:
    emptied before each load), before dlt adds it as NOT NULL, which it cannot do to rows.
    Their rows become the account `default` (tables loaded before accounts existed), or,
    with `attributed` (`accounts_by_import`), the account their import has there."""
    client = reader.client
    sql = client.sql_client

    def add() -> None:
        for table in tables:
            name = reader.qualified(table)
            sql.execute_sql(f"ALTER TABLE {name} ADD COLUMN {ACCOUNT_COLUMN} VARCHAR")
            if attributed is None:
                sql.execute_sql(
                    f"UPDATE {name} SET {ACCOUNT_COLUMN} = %s WHERE {ACCOUNT_COLUMN} IS NULL",
                    DEFAULT_ACCOUNT,
                )
            else:
                sql.execute_sql(
                    f"UPDATE {name} AS target SET {ACCOUNT_COLUMN} = known.{ACCOUNT_COLUMN}"
                    f" FROM ({attributed}) AS known"
                    f" WHERE target.{IMPORT_ID_OF[table]} = known.import_id"
                )
            sql.execute_sql(f"ALTER TABLE {name} ALTER COLUMN {ACCOUNT_COLUMN} SET NOT NULL")
        if staging:
            with client.with_staging_dataset():
                for table in staging:
                    name = sql.make_qualified_table_name(table)
                    sql.execute_sql(f"ALTER TABLE {name} ADD COLUMN {ACCOUNT_COLUMN} VARCHAR")

    reader.read("the tables", add)


def accounts_by_import(reader: DestinationReader, sources: List[str]) -> Optional[str]:
    """A query of each import id the tables `sources` (which hold `account`) know, with the
    one account they know it under (an id under two accounts is left out: it tells neither
    apart); None without sources."""
    if not sources:
        return None
    known = " UNION ".join(
        f"SELECT {IMPORT_ID_OF[table]} AS import_id, {ACCOUNT_COLUMN}"
        f" FROM {reader.qualified(table)}"
        for table in sources
    )
    return (
        f"SELECT import_id, min({ACCOUNT_COLUMN}) AS {ACCOUNT_COLUMN} FROM ({known}) AS ids"
        f" GROUP BY import_id HAVING count(DISTINCT {ACCOUNT_COLUMN}) = 1"
    )


def unattributed_rows(reader: DestinationReader, table: str, attributed: Optional[str]) -> int:
    """How many rows of `table` no account of `attributed` (`accounts_by_import`) fits."""
    where = "TRUE"
    if attributed is not None:
        key = IMPORT_ID_OF[table]
        where = f"{key} IS NULL OR {key} NOT IN (SELECT import_id FROM ({attributed}) AS known)"
    query = f"SELECT count(*) FROM {reader.qualified(table)} WHERE {where}"
    rows = reader.read("the tables", lambda: reader.client.sql_client.execute_sql(query))
    return int(rows[0][0]) if rows else 0


def holds_rows(reader: DestinationReader, table: str) -> bool:
    query = f"SELECT 1 FROM {reader.qualified(table)} LIMIT 1"
    return bool(reader.read("the tables", lambda: reader.client.sql_client.execute_sql(query)))


def rename_respelled(reader: DestinationReader, schema: Any, columns: Dict[str, List[str]]) -> None:
    """Renames back the columns of the written tables a person renamed to another spelling of
    their name (`counts__total` to `"Counts__Total"` on PostgreSQL, where that is another
    column): dlt would add `counts__total` again empty, and then fail on every change of its
    schema, as it tells column names apart regardless of case. The rows keep their values:
    nothing is listed again. `columns` (`storage_columns`) is updated."""
    if reader.lakehouse or schema is None:
        return
    sql = reader.client.sql_client
    renamed: List[str] = []
    statements: List[str] = []
    for table, stored in columns.items():
        declared = schema.tables.get(table, {}).get("columns", {})
        respelled = [
            c
            for c in stored
            if c != c.lower() and c.lower() in declared and c.lower() not in stored
        ]
        for spelled in respelled:
            statements.append(
                f"ALTER TABLE {reader.qualified(table)} RENAME COLUMN"
                f" {sql.escape_column_name(spelled, casefold=False)}"
                f" TO {sql.escape_column_name(spelled.lower())}"
            )
            stored[stored.index(spelled)] = spelled.lower()
            renamed.append(f'{reader.dataset}.{table}."{spelled}"')
    if statements:
        reader.read("the tables", lambda: sql.execute_many(statements))
    if renamed:
        logger.warning(
            "%s renamed back to the lower case dlt writes (renamed by a person?): dlt tells"
            " column names apart regardless of case, and would fail on both spellings",
            ", ".join(renamed),
        )


def recreate_tables(reader: DestinationReader, tables: List[str]) -> None:
    """Creates the tables the schema describes that the destination lacks (dropped or
    renamed by a person), and the columns these tables lack: dlt creates either only when
    its schema version is new. A lakehouse's table is created by the load that writes it:
    the run writes those it lacks (`Checked.to_write`)."""
    client = reader.client
    known = [name for name in tables if name in client.schema.tables]
    if known and not reader.lakehouse:
        reader.read(
            "the tables", lambda: client.update_stored_schema(only_tables=known, force=True)
        )
