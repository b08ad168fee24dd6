"""What the destination already holds for this source, read by the run that loads into it.

The local state is a cache: the table is what a run checks it against. Through one
connection held for the whole extract, a run reads the state committed with the table (dlt
loads it in the same package as the rows), whether the tables it writes still exist and how
many live imports `contact_imports` holds, and the rows the table holds for the imports the
run reads (what makes a row new, changed or as before: `known`); the checks of the tables'
structure and their repairs (`table_structure`) go through the same connection.

A read that fails for a passing reason is tried again, then stops the run in one line (see
`reads`). Delta and Iceberg tables on dlt's filesystem destination are read with SQL too,
through an in-memory DuckDB (see `lake`). Any other destination that is not a SQL database
(dlt's filesystem with plain files) is read through the state alone (`readable` is False),
and the run behaves as dlt alone would.

Everything here goes through the pipeline that runs the source (dlt's active pipeline
context), so the source keeps these guarantees in any dlt pipeline.
"""

from contextlib import ExitStack
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Optional,
    Set,
    Tuple,
    TypeVar,
)

import dlt
from dlt.common.destination.client import WithStateSync
from dlt.common.destination.exceptions import DestinationException, DestinationUndefinedEntity
from dlt.destinations.job_client_impl import SqlJobClientBase
from dlt.pipeline.state_sync import load_pipeline_state_from_destination

from .accounts import ACCOUNT_COLUMN
from .committed import Committed, TableHealth
from .lake import LakeTables, is_lake
from .legacy import resource_state_of
from .names import column_name_in_schema, names_of, selected_columns, sql_literal
from .reads import retrying, stream
from .records import COLUMNS, Row
from .settings import COUNT_FIELDS, TABLE_NAME

_DLT_COLUMNS = ("_dlt_load_id", "_dlt_id", ACCOUNT_COLUMN)  # the run adds the account
_COPY = "_resend_imports_copy"  # `last_rows`: which of an import's rows, live first
_IDS_PER_QUERY = 500
_ROWS_PER_QUERY = 5000
# what a short run compares a row by (`known.TableLookups`)
_LOOKED_UP = ("id", "status", *(f"counts__{f}" for f in COUNT_FIELDS), "deleted_at")

T = TypeVar("T")


def committed_state(pipeline: dlt.Pipeline) -> Committed:
    """The resource state committed in the destination with the data (one connection)."""
    with DestinationReader(pipeline) as reader:
        return reader.committed_state()


class DestinationReader:
    """The reads of one run, through one connection held from the start of the extract to
    its end (a DuckDB connection costs tens of milliseconds to open)."""

    def __init__(self, pipeline: dlt.Pipeline) -> None:
        self.pipeline = pipeline
        self._stack = ExitStack()
        self._client: Any = None
        self._lake: Optional[LakeTables] = None  # Delta or Iceberg tables, read through Arrow
        self.readable = False  # a SQL database whose tables this run can read
        # the account whose rows the reads of rows see (None: every row, as before accounts)
        self.account: Optional[str] = None

    def __enter__(self) -> "DestinationReader":
        client: Any = self.pipeline.destination_client()
        self._client = retrying(
            self.pipeline, "the destination", lambda: self._stack.enter_context(client)
        )
        if is_lake(self._client, TABLE_NAME):
            self._lake = LakeTables(self._client)
            self._stack.callback(self._lake.close)
        self.readable = isinstance(self._client, SqlJobClientBase) or self._lake is not None
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stack.close()

    @property
    def dataset(self) -> str:
        """The dataset as the destination names it, for messages."""
        return names_of(self._client, self.pipeline.dataset_name).dataset

    @property
    def client(self) -> Any:
        """dlt's job client of the destination (a lakehouse's: its filesystem client)."""
        return self._client

    @property
    def lakehouse(self) -> bool:
        """Delta or Iceberg tables, read through an in-memory DuckDB (`lake`)."""
        return self._lake is not None

    @property
    def schema(self) -> Any:
        """The schema this run loads with (the job client's), or None before any run."""
        return getattr(self._client, "schema", None)

    # -- the state and the health of the tables ------------------------------------------

    def committed_state(self) -> Committed:
        """The resource state committed with the data: one query."""
        client = self._client
        if not isinstance(client, WithStateSync):
            return Committed(False, {}, False)
        try:
            stored = self.read(
                "the committed state",
                lambda: load_pipeline_state_from_destination(self.pipeline.pipeline_name, client),
            )
        except DestinationUndefinedEntity:  # no dataset, or no state table yet
            return Committed(True, {}, True)
        return Committed(True, resource_state_of(stored or {}), False)

    def storage_columns(self, tables: Iterable[str], casefold: bool = True) -> Dict[str, List[str]]:
        """The columns each of `tables` has in the destination (none: it does not exist), as
        dlt's schema names them, or with `casefold` False as the catalog spells them: a column
        a person added as `"Note"` is only found under that name. Where identifiers keep
        their case (PostgreSQL), a column a person renamed `"Counts__Total"` is not
        `counts__total` and keeps its spelling (`rename_respelled` puts it right); where they
        do not (DuckDB), it is the same column and reads `counts__total`."""
        client = self._client
        wanted = list(tables)
        if not self.readable:
            return {}
        if self._lake is not None:
            lake = self._lake
            return self.read("the tables", lambda: lake.columns(wanted))
        found = self.read("the catalog", lambda: dict(client.get_storage_tables(wanted)))
        capabilities = client.capabilities
        return {
            name: [
                column_name_in_schema(capabilities, c) if casefold else c
                for c in found.get(name, {})
            ]
            for name in wanted
        }

    def table_health(self, columns: List[str]) -> TableHealth:
        """How many live imports the table holds (`columns`: its columns, from the catalog)."""
        if not columns:
            return TableHealth([], None)
        table = self.qualified(TABLE_NAME)
        scope, args = self._scope()
        live = "deleted_at IS NULL" if "deleted_at" in columns else "TRUE"
        rows = self._query("the table", f"SELECT count(*) FROM {table} WHERE {scope}{live}", *args)
        return TableHealth(columns, int(rows[0][0]) if rows else 0)

    # -- rows ---------------------------------------------------------------------------------

    def known_rows(self, ids: List[str], columns: List[str]) -> List[Row]:
        """The table's `id`, `status`, counts and `deleted_at` of these imports."""
        selected = ", ".join(selected_columns(_LOOKED_UP, columns))
        rows = self._where_in("the table", selected, TABLE_NAME, "id", ids)
        return [dict(zip(_LOOKED_UP, row, strict=True)) for row in rows]

    def copy_known(
        self,
        columns: List[str],
        rows_per_batch: int,
        start: Callable[[], None],
        take: Callable[[Any], None],
    ) -> None:
        """Every row of the table as a complete listing compares it (the declared `COLUMNS`,
        then whether any column of a field Resend added holds a value), handed to `take` in
        batches of at most `rows_per_batch` rows (Arrow record batches from DuckDB, DB-API
        tuples elsewhere), streamed: memory stays flat whatever the size of the table.
        `start` is called before each attempt (a retry starts the copy over). `columns`: the
        table's, in lower case.

        A column a person added (one dlt's schema does not know: no field of Resend's made
        it) is not compared: Resend never sends it, so it cannot differ from Resend, and a
        row loaded again for it would lose the person's value (a merge replaces whole rows)."""
        table = self.qualified(TABLE_NAME)
        sql = self._sql
        spelled = self.storage_columns([TABLE_NAME], casefold=False).get(TABLE_NAME, columns)
        selected = selected_columns(COLUMNS, columns)
        fields = self._fields_of(TABLE_NAME)
        others = [
            c
            for c in spelled
            if c.lower() not in (*COLUMNS, *_DLT_COLUMNS)
            and (fields is None or c.lower() in fields)
        ]
        # quoted as spelled: dlt would fold `"Note"` into `note`, which does not exist
        held = " OR ".join(
            f"{sql.escape_column_name(c, casefold=False)} IS NOT NULL" for c in others
        )
        query = f"SELECT {', '.join(selected)}, {f'({held})' if held else 'FALSE'} AS extra"
        query += f" FROM {table}"
        if self.account is not None:  # a literal: the streaming drivers take no parameters
            query += f" WHERE {ACCOUNT_COLUMN} = {sql_literal(self.account)}"

        def copy() -> None:
            start()
            for batch in stream(sql, query, rows_per_batch):
                take(batch)

        self.read("the table", copy)

    def _fields_of(self, table: str) -> Optional[Set[str]]:
        """The columns dlt's schema holds for `table` (those it made of fields Resend sent),
        or None when the schema does not know the table (then every column counts)."""
        known = (self.schema.tables if self.schema is not None else {}).get(table)
        return None if known is None else set(known.get("columns", {}))

    def held_keys(self, what: str, table: str, column: str, keys: List[str]) -> Set[str]:
        """Those of these keys `table` (`what` it is, for an error) holds in `column`."""
        return {row[0] for row in self._where_in(what, column, table, column, keys)}

    def last_rows(self, ids: List[str]) -> Iterator[List[Row]]:
        """The table's rows of these imports as they are now, without dlt's own columns, in
        chunks: one per import, its live copy first, where a person copied rows (each row
        returned is marked deleted, counted and recorded once)."""
        table = self.qualified(TABLE_NAME)
        for start in range(0, len(ids), _ROWS_PER_QUERY):
            chunk = ids[start : start + _ROWS_PER_QUERY]
            marks = ", ".join(["%s"] * len(chunk))
            scope, args = self._scope()
            query = (
                f"SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY id ORDER BY"
                f" deleted_at NULLS FIRST) AS {_COPY} FROM {table} WHERE {scope}id IN ({marks}))"
                f" AS copies WHERE {_COPY} = 1"
            )
            chunk = [*args, *chunk]

            def read(query: str = query, chunk: List[str] = chunk) -> List[Row]:
                with self._sql.execute_query(query, *chunk) as cursor:
                    names = [column[0].lower() for column in cursor.description]
                    rows = [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]
                dropped = (*_DLT_COLUMNS, _COPY)
                return [{k: v for k, v in r.items() if k not in dropped} for r in rows]

            yield self.read("the table", read)

    # -- plumbing -----------------------------------------------------------------------------

    def _scope(self) -> Tuple[str, List[Any]]:
        """The condition (and its parameter) that keeps a read to this run's account."""
        if self.account is None:
            return "", []
        return f"{ACCOUNT_COLUMN} = %s AND ", [self.account]

    @property
    def _sql(self) -> Any:
        """The SQL client reads go through: the destination's, or the lakehouse's DuckDB."""
        return self._client.sql_client if self._lake is None else self._lake.sql_client

    def qualified(self, table: str) -> str:
        if self._lake is not None:
            return self._lake.qualified(table)
        name: str = self._client.sql_client.make_qualified_table_name(table)
        return name

    def _where_in(
        self, what: str, selected: str, table: str, column: str, keys: List[str]
    ) -> List[Any]:
        """`selected` of the rows of `table` whose `column` is one of `keys`, a query a chunk."""
        qualified = self.qualified(table)
        found: List[Any] = []
        for start in range(0, len(keys), _IDS_PER_QUERY):
            chunk = keys[start : start + _IDS_PER_QUERY]
            marks = ", ".join(["%s"] * len(chunk))
            scope, args = self._scope()
            query = f"SELECT {selected} FROM {qualified} WHERE {scope}{column} IN ({marks})"
            found += self._query(what, query, *args, *chunk)
        return found

    def _query(self, what: str, query: str, *args: Any) -> List[Any]:
        return list(self.read(what, lambda: self._sql.execute_sql(query, *args)) or [])

    def read(self, what: str, read: Callable[[], T]) -> T:
        """`read`, tried again on dlt's transient errors with a fresh connection."""
        return retrying(self.pipeline, what, read, self._reconnect)

    def _reconnect(self) -> None:
        sql = self._sql
        try:
            sql.close_connection()
        except DestinationException:
            pass  # a connection that is gone needs no closing
        sql.open_connection()
