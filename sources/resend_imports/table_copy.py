"""`TableCopy`: what a complete listing of an existing table compares with (see `known`).

A complete listing reads every import; looking each page up in the table would scan it once
per page, and holding the table in Python would grow with the history. Instead the table's
ids, statuses and counts are copied once into a scratch DuckDB file, the listing is
remembered beside them, and at the end one join says what is new, changed or back, and one
anti-join which live imports the listing did not return. Memory stays within the scratch
database's limit, spilling to its folder, whatever the number of imports.
"""

import os
import shutil
import tempfile
from datetime import datetime
from typing import Any, Dict, Iterator, List, Sequence

import duckdb
import pyarrow as pa

from .destination import DestinationReader
from .formats import TIMESTAMP
from .known import Changed, Known, NothingKnown, isoformat
from .records import Row
from .settings import COUNT_FIELDS

SCRATCH_ROWS_PER_BATCH = 50_000
SCRATCH_MEMORY_LIMIT = "64MB"

_COUNT_COLUMNS = [f"counts__{name}" for name in COUNT_FIELDS]
# what the table holds of an import (`DestinationReader.copy_known`)
KNOWN_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string()),
        pa.field("status", pa.string()),
        *(pa.field(column, pa.int64()) for column in _COUNT_COLUMNS),
        pa.field("deleted_at", TIMESTAMP),
    ]
)
# what the listing showed of an import, and when
LISTED_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string()),
        pa.field("status", pa.string()),
        *(pa.field(column, pa.int64()) for column in _COUNT_COLUMNS),
        pa.field("created_at", TIMESTAMP),
        pa.field("completed_at", TIMESTAMP),
        pa.field("fingerprint", pa.string()),
        pa.field("seen_at", TIMESTAMP),
    ]
)


class TableCopy(NothingKnown):
    """A complete listing of an existing table, compared with it once, at the end: rows are
    `remember`ed as the listing goes by (and handed to dlt at once), `changes` and
    `unlisted_live_ids` read the joins."""

    reconciles = True
    deferred = True

    def __init__(self, reader: DestinationReader, columns: List[str]) -> None:
        self._folder = tempfile.mkdtemp(prefix="resend-imports-known-")
        try:
            self._db = duckdb.connect(
                os.path.join(self._folder, "known.duckdb"),
                config={
                    "memory_limit": SCRATCH_MEMORY_LIMIT,
                    "threads": 1,
                    "preserve_insertion_order": False,
                    "temp_directory": self._folder,
                },
            )
            self._db.execute("SET TimeZone = 'UTC'")
            counts = ", ".join(f"{column} BIGINT" for column in _COUNT_COLUMNS)
            self._db.execute(
                "CREATE TABLE known (id VARCHAR, fingerprint VARCHAR, deleted_at TIMESTAMPTZ);"
                f" CREATE TABLE listed (id VARCHAR, status VARCHAR, {counts},"
                " created_at TIMESTAMPTZ, completed_at TIMESTAMPTZ, fingerprint VARCHAR,"
                " seen_at TIMESTAMPTZ);"
                " CREATE TABLE read_only (id VARCHAR)"
            )
            reader.copy_known(columns, SCRATCH_ROWS_PER_BATCH, self._start, self._take)
        except BaseException:
            self.close()
            raise

    def _start(self) -> None:
        self._db.execute("DELETE FROM known")

    def _take(self, batch: Any) -> None:
        parts = ", ".join(
            ["coalesce(status, '')"]
            + [f"coalesce(CAST({column} AS VARCHAR), '')" for column in _COUNT_COLUMNS]
        )
        self._insert(
            "batch",
            known_table(batch),
            f"INSERT INTO known SELECT id, concat_ws('|', {parts}), deleted_at",
        )

    def _insert(self, name: str, table: Any, statement: str) -> None:
        self._db.register(name, table)
        try:
            self._db.execute(f"{statement} FROM {name}")
        finally:
            self._db.unregister(name)

    def remember(self, rows: List[Row], fingerprints: List[str], seen_at: List[datetime]) -> None:
        """Rows of the listing (or read by id), to compare at the end."""
        columns: Dict[str, List[Any]] = {
            name: [row.get(name) for row in rows]
            for name in LISTED_SCHEMA.names
            if name not in ("fingerprint", "seen_at")
        }
        columns["fingerprint"] = list(fingerprints)
        columns["seen_at"] = list(seen_at)
        self._insert(
            "remembered",
            pa.Table.from_pydict(columns, schema=LISTED_SCHEMA),
            "INSERT INTO listed SELECT *",
        )

    def note_read(self, ids: Sequence[str]) -> None:
        read = pa.table({"id": pa.array(list(ids), pa.string())})
        self._insert("read_ids", read, "INSERT INTO read_only SELECT id")

    def shares_imports(self) -> bool:
        """Whether the listing returned an import the table holds live."""
        found = self._db.execute(
            "SELECT EXISTS (SELECT 1 FROM listed l JOIN known k ON k.id = l.id"
            " WHERE k.deleted_at IS NULL)"
        ).fetchall()
        return bool(found[0][0])

    def changes(self, rows_per_batch: int) -> Iterator[Changed]:
        """The remembered rows that are new, changed or back, with what the table held."""
        reader = (
            self._db.cursor()
            .sql(
                "SELECT l.*, k.fingerprint AS known_fingerprint, k.deleted_at AS known_deleted_at"
                " FROM listed l LEFT JOIN known k ON k.id = l.id"
                " WHERE k.id IS NULL OR k.deleted_at IS NOT NULL OR k.fingerprint <> l.fingerprint"
            )
            .to_arrow_reader(rows_per_batch)
        )
        for batch in reader:
            rows = batch.to_pylist()
            known = [
                None if printed is None else Known(printed, isoformat(deleted))
                for printed, deleted in (
                    (row.pop("known_fingerprint"), row.pop("known_deleted_at")) for row in rows
                )
            ]
            printed = [row.pop("fingerprint") for row in rows]
            seen_at = [row.pop("seen_at") for row in rows]
            yield Changed(rows, printed, seen_at, known)

    def unlisted_live_ids(self) -> Iterator[List[str]]:
        """Live imports of the table the listing did not return, in chunks (read on a cursor
        of its own: the caller remembers what it fetches by id meanwhile)."""
        result = self._db.cursor().execute(
            "SELECT id FROM known k WHERE deleted_at IS NULL"
            " AND NOT EXISTS (SELECT 1 FROM listed l WHERE l.id = k.id)"
            " AND NOT EXISTS (SELECT 1 FROM read_only r WHERE r.id = k.id) ORDER BY id"
        )
        while rows := result.fetchmany(SCRATCH_ROWS_PER_BATCH):
            yield [row[0] for row in rows]

    def close(self) -> None:
        db = getattr(self, "_db", None)
        if db is not None:
            db.close()
        shutil.rmtree(self._folder, ignore_errors=True)


def known_table(batch: Any) -> pa.Table:
    """A batch of `DestinationReader.copy_known` (an Arrow record batch or DB-API tuples) as
    one Arrow table of `KNOWN_SCHEMA`."""
    if isinstance(batch, pa.RecordBatch):
        batch = pa.Table.from_batches([batch])
    if isinstance(batch, pa.Table):
        return pa.Table.from_arrays(
            [batch.column(index).cast(field.type) for index, field in enumerate(KNOWN_SCHEMA)],
            schema=KNOWN_SCHEMA,
        )
    columns = list(zip(*batch, strict=True)) if batch else [()] * len(KNOWN_SCHEMA)
    return pa.Table.from_arrays(
        [pa.array(column, field.type) for column, field in zip(columns, KNOWN_SCHEMA, strict=True)],
        schema=KNOWN_SCHEMA,
    )
