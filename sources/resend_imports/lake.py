"""The tables of a lakehouse (Delta or Iceberg on dlt's `filesystem` destination) read with
SQL, so that a run checks and compares with them as it does with a database.

dlt's own SQL over a bucket goes through DuckDB's `delta` and `iceberg` extensions, which
DuckDB downloads on first use: a run must work offline. Here each table the run reads is
opened by dlt's native client of its format (`deltalake`, `pyiceberg`), handed to an
in-memory DuckDB through Arrow once, when first read, and queried there with the same SQL as
elsewhere. What is read is the last committed version of each table, as the run starts.
"""

from typing import Any, Dict, Iterable, List, Optional

import duckdb
from dlt.common.destination.exceptions import DestinationUndefinedEntity
from dlt.destinations.impl.duckdb.configuration import DuckDbCredentials
from dlt.destinations.impl.duckdb.factory import duckdb as duckdb_factory
from dlt.destinations.impl.duckdb.sql_client import DuckDbSqlClient
from dlt.destinations.impl.filesystem.filesystem import FilesystemClient

from .errors import LakeTableUnreadableError, recreated_next_run

TABLE_FORMATS = ("delta", "iceberg")


def table_format_of(client: Any, table: str) -> Optional[str]:
    """The open table format `table` has on a filesystem destination (from the schema the
    run loads with), or None: another destination, or files dlt's SQL reads itself."""
    if not isinstance(client, FilesystemClient) or table not in client.schema.tables:
        return None
    chosen = client.prepare_load_table(table).get("table_format")
    return str(chosen) if chosen in TABLE_FORMATS else None


def is_lake(client: Any, table: str) -> bool:
    """Whether `table` is (or, nothing being loaded yet, may become) an open table on a
    filesystem destination: a first run reads it as an empty lakehouse."""
    if not isinstance(client, FilesystemClient):
        return False
    return table not in client.schema.tables or table_format_of(client, table) is not None


def arrow_of(client: FilesystemClient, table_format: str, table: str) -> Any:
    """The committed rows of `table` as one Arrow table; DestinationUndefinedEntity when the
    bucket holds no such table."""
    native = client.load_open_table(table_format, table)  # type: ignore[arg-type]
    if table_format == "delta":
        return native.to_pyarrow_table()
    return native.scan().to_arrow()


def unreadable(
    client: FilesystemClient, table_format: str, table: str, exc: FileNotFoundError
) -> LakeTableUnreadableError:
    """What a person does about a table that lists a file the bucket lacks: restore it, or
    remove the table, which the next run creates again."""
    missing = (str(exc).strip().splitlines() or [""])[0][:300]
    folder = client.get_table_dir(table).rstrip("/")
    return LakeTableUnreadableError(
        f"the {table_format.capitalize()} table {client.dataset_name}.{table} cannot be read:"
        f" a file it lists is missing from the bucket ({missing}); restore the file from a"
        f" backup of the bucket, or remove the table's folder {folder}:"
        f" {recreated_next_run(table)}"
    )


class LakeTables:
    """An in-memory DuckDB holding the tables of a filesystem destination this run reads."""

    def __init__(self, client: FilesystemClient) -> None:
        self.client = client
        self._connection = duckdb.connect(":memory:")
        capabilities = duckdb_factory().capabilities()
        dataset = client.dataset_name
        credentials = DuckDbCredentials(self._connection)
        credentials.on_resolved()  # its connection pool, over this connection
        self.sql_client = DuckDbSqlClient(dataset, f"{dataset}_staging", credentials, capabilities)
        self._connection.execute(f"CREATE SCHEMA {self.sql_client.fully_qualified_dataset_name()}")
        self.sql_client.open_connection()
        self._loaded: Dict[str, List[str]] = {}  # table -> its columns (none: not in the bucket)

    def columns(self, tables: Iterable[str]) -> Dict[str, List[str]]:
        """The columns of each of `tables` (none: not in the bucket); dlt's own tables (state,
        loads, schemas: files) as dlt's client says."""
        found: Dict[str, List[str]] = {}
        own = set(self.client.schema.dlt_table_names())
        for table in tables:
            if table in own:
                stored = dict(self.client.get_storage_tables([table]))
                found[table] = [c.lower() for c in stored.get(table, {})]
            else:
                found[table] = self.load(table)
        return found

    def load(self, table: str) -> List[str]:
        """Copies `table` into DuckDB once (its columns; none when the bucket lacks it)."""
        if table in self._loaded:
            return self._loaded[table]
        columns: List[str] = []
        table_format = table_format_of(self.client, table)
        rows = None
        if table_format is not None:  # else nothing of it is loaded yet
            try:
                rows = arrow_of(self.client, table_format, table)
            except DestinationUndefinedEntity:
                pass
            except FileNotFoundError as exc:  # deltalake's and pyarrow's (pyiceberg's reader)
                raise unreadable(self.client, table_format, table, exc) from exc
        if rows is not None:
            name = self.sql_client.make_qualified_table_name(table)
            self._connection.register("resend_imports_arrow", rows)
            self._connection.execute(f"CREATE TABLE {name} AS SELECT * FROM resend_imports_arrow")
            self._connection.unregister("resend_imports_arrow")
            columns = [str(column).lower() for column in rows.column_names]
        self._loaded[table] = columns
        return columns

    def qualified(self, table: str) -> str:
        self.load(table)
        name: str = self.sql_client.make_qualified_table_name(table)
        return name

    def close(self) -> None:
        self.sql_client.close_connection()
        self._connection.close()
