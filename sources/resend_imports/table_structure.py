"""What the checks before a listing do to the destination's structure, through the run's
`DestinationReader`: whether dlt's staging dataset is somebody else's dataset, and the
repairs dlt would not make itself (a table or column a person dropped created again, the
`account` column added to tables from before accounts).

A lakehouse (Delta, Iceberg) needs none of these: it merges in place and its next load
writes a table whole.
"""

from typing import Any, Dict, List, Optional

from .accounts import ACCOUNT_COLUMN, DEFAULT_ACCOUNT
from .destination import DestinationReader


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


def add_account_column(reader: DestinationReader, tables: List[str], staging: List[str]) -> None:
    """Adds `account` to tables loaded before accounts existed, their rows becoming the
    account `default`, and to their copies in dlt's staging dataset (`staging`: emptied
    before each load), before dlt adds it as NOT NULL, which it cannot do to rows."""
    client = reader.client
    sql = client.sql_client

    def add() -> None:
        for table in tables:
            name = reader.qualified(table)
            sql.execute_sql(f"ALTER TABLE {name} ADD COLUMN {ACCOUNT_COLUMN} VARCHAR")
            sql.execute_sql(
                f"UPDATE {name} SET {ACCOUNT_COLUMN} = %s WHERE {ACCOUNT_COLUMN} IS NULL",
                DEFAULT_ACCOUNT,
            )
            sql.execute_sql(f"ALTER TABLE {name} ALTER COLUMN {ACCOUNT_COLUMN} SET NOT NULL")
        if staging:
            with client.with_staging_dataset():
                for table in staging:
                    name = sql.make_qualified_table_name(table)
                    sql.execute_sql(f"ALTER TABLE {name} ADD COLUMN {ACCOUNT_COLUMN} VARCHAR")

    reader.read("the tables", add)


def recreate_tables(reader: DestinationReader, tables: List[str]) -> None:
    """Creates the tables the schema describes that the destination lacks (dropped or
    renamed by a person), and the columns these tables lack: dlt creates either only when
    its schema version is new."""
    client = reader.client
    known = [name for name in tables if name in client.schema.tables]
    if known and not reader.lakehouse:
        reader.read(
            "the tables", lambda: client.update_stored_schema(only_tables=known, force=True)
        )
