"""`TableCopy`: what a complete listing of an existing table compares with (see `known`).

A complete listing reads every import; looking each page up in the table would scan it once
per page, and holding the table in Python would grow with the history. Instead the table's
rows are copied once into a scratch DuckDB file, the listing waits beside them (the rows
themselves, not in Python), and at the end one join says which listed rows differ from the
table's (new, changed, back, or altered anywhere else: only those reach dlt, so the merge
grows with the changes, not the history), and one anti-join which live imports the listing
did not return. Memory stays within the scratch database's limit, spilling to its folder,
whatever the number of imports.

A listed row is handed to dlt again when the table's row differs in any column the resource
declares (`digest`: a person's edit, a column a person dropped and dlt added again empty),
when either side holds a field outside them (a field Resend added: dlt's normalizer, not this
comparison, decides its columns and variants), or when the table holds the import twice. A
column a person added (dlt's schema does not know it) is not compared: Resend never sends it,
and loading a row again for it would wipe the person's value.
Those rows observed as nothing new (status and counts as the table's) are counted
(`SyncReport.rewritten`) when the table differed from Resend in a way the join can tell (a
declared column, a field outside them on one side only, a copy), and the run says so; a row
loaded only because both sides hold fields outside the declared columns (which the join
cannot compare) is not: once Resend adds a field, every later listing loads every row again
without claiming that the whole table differed.

A field outside the declared columns whose value is None counts as absent (dlt loads nothing
for it). A field Resend adds to every import makes every row differ: the listing then loads
every row, as a whole-table merge would.

The scratch folder lies in the pipeline's working folder (not a `/tmp` that may be memory);
a run removes those a killed run left behind, never another live run's (`scratch`).
"""

import json
import os
from datetime import datetime
from typing import Any, Dict, Iterator, List, Optional, Sequence, Set

import duckdb
import pyarrow as pa

from .destination import DestinationReader
from .formats import TIMESTAMP, arrow_fields
from .known import Changed, Known, NothingKnown, isoformat
from .records import COLUMNS, Row
from .scratch import ScratchFolder
from .settings import COUNT_FIELDS, TABLE_NAME
from .typed_columns import as_declared

SCRATCH_ROWS_PER_BATCH = 50_000
SCRATCH_MEMORY_LIMIT = "64MB"

_COUNT_COLUMNS = [f"counts__{name}" for name in COUNT_FIELDS]
# the declared columns (`records.COLUMNS`), typed as the resource declares them
_TYPES = {name: field.type for name, field in arrow_fields(COLUMNS).items()}
# the row's own columns, as the listing and the table hold them
_ROW_COLUMNS = [name for name in COLUMNS if name != "deleted_at"]
# declared text columns: a value of another type (`status` 3) goes with the extra fields
_TEXT = [name for name, hint in COLUMNS.items() if hint["data_type"] == "text"]
_TEXTUAL: Set[Any] = {str, type(None)}
# the fields of a listed row outside the declared columns, as JSON text (NULL: none)
_EXTRA = "extra"
# what the table holds of an import (`DestinationReader.copy_known`)
KNOWN_SCHEMA = pa.schema(
    [
        *(pa.field(name, _TYPES[name]) for name in COLUMNS),
        pa.field(_EXTRA, pa.bool_()),
    ]
)
# what the listing showed of an import, and when
LISTED_SCHEMA = pa.schema(
    [
        *(pa.field(name, _TYPES[name]) for name in _ROW_COLUMNS),
        pa.field(_EXTRA, pa.string()),
        # whether `extra` holds a field outside the declared columns (the table's `extra`)
        pa.field("outside", pa.bool_()),
        pa.field("fingerprint", pa.string()),
        pa.field("seen_at", TIMESTAMP),
    ]
)
# the row's columns but its key: what the digest covers
_VALUE_COLUMNS = [name for name in _ROW_COLUMNS if name != "id"]
# one value of a row's declared columns, computed alike on both sides in the scratch file
_DIGEST = f"hash({', '.join(_VALUE_COLUMNS)})"
_FINGERPRINT = "concat_ws('|', {})".format(
    ", ".join(
        ["coalesce(status, '')"]
        + [f"coalesce(CAST({column} AS VARCHAR), '')" for column in _COUNT_COLUMNS]
    )
)
_DECLARED = frozenset(COLUMNS)


class TableCopy(NothingKnown):
    """A complete listing of an existing table, compared with it once, at the end: rows are
    `remember`ed as the listing goes by (and handed to dlt at once), `changes` and
    `unlisted_live_ids` read the joins."""

    reconciles = True
    deferred = True

    def __init__(self, reader: DestinationReader, columns: List[str]) -> None:
        self._table = f"{reader.dataset}.{TABLE_NAME}"  # for an error (`typed_columns`)
        self._folder = ScratchFolder(reader.pipeline.working_dir)
        try:
            self._db = duckdb.connect(
                os.path.join(self._folder.path, "known.duckdb"),
                config={
                    "memory_limit": SCRATCH_MEMORY_LIMIT,
                    "threads": 1,
                    "preserve_insertion_order": False,
                    "temp_directory": self._folder.path,
                },
            )
            self._db.execute("SET TimeZone = 'UTC'")
            self._db.register("listed_schema", LISTED_SCHEMA.empty_table())
            self._db.execute(
                "CREATE TABLE known (id VARCHAR, fingerprint VARCHAR, digest UBIGINT,"
                " extra BOOLEAN, deleted_at TIMESTAMPTZ);"
                " CREATE TABLE listed AS SELECT *, 0::UBIGINT AS digest FROM listed_schema;"
                " CREATE TABLE read_only (id VARCHAR)"
            )
            self._db.unregister("listed_schema")
            reader.copy_known(columns, SCRATCH_ROWS_PER_BATCH, self._start, self._take)
        except BaseException:
            self.close()
            raise

    def _start(self) -> None:
        """Before each attempt of the copy: a read retried after a fault starts over, and
        rows of the failed attempt would be copies."""
        self._db.execute("DELETE FROM known")

    def _take(self, batch: Any) -> None:
        """A batch of the table's rows, kept as its fingerprint and digest: computed here by
        the same SQL as the listing's (`remember`), so that both sides agree to the bit
        whatever types the destination's driver hands over (aware or naive timestamps,
        Decimal or int)."""
        self._insert(
            "batch",
            known_table(batch, self._table),
            f"INSERT INTO known SELECT id, {_FINGERPRINT}, {_DIGEST}, extra, deleted_at",
        )

    def _insert(self, name: str, table: Any, statement: str) -> None:
        """`statement` over an Arrow table registered as `name`: DuckDB reads the Arrow
        buffers in place (no row-by-row insert from Python), and the name is released."""
        self._db.register(name, table)
        try:
            self._db.execute(f"{statement} FROM {name}")
        finally:
            self._db.unregister(name)

    def remember(self, rows: List[Row], fingerprints: List[str], seen_at: List[datetime]) -> None:
        """Rows of the listing (or read by id), to compare at the end; they wait here, not
        in Python, until the join says which ones dlt gets."""
        columns: Dict[str, List[Any]] = {name: [] for name in _ROW_COLUMNS}
        extras: List[Optional[str]] = []
        outside: List[bool] = []
        for row in rows:
            extra = None
            if not row.keys() <= _DECLARED or any(type(row.get(n)) not in _TEXTUAL for n in _TEXT):
                extra = _extra(row)
                # a declared text column holding something else (`status` 3) is compared
                # as the text dlt stores for it; dlt still gets the value (`changes`)
                row = {k: str(v) if k in extra else v for k, v in row.items() if k in _DECLARED}
            extras.append(json.dumps(extra) if extra else None)
            outside.append(extra is not None and not extra.keys() <= _DECLARED)
            for name, values in columns.items():
                values.append(row.get(name))
        self._insert(
            "remembered",
            pa.Table.from_pydict(
                {
                    **columns,
                    _EXTRA: extras,
                    "outside": outside,
                    "fingerprint": fingerprints,
                    "seen_at": seen_at,
                },
                schema=LISTED_SCHEMA,
            ),
            f"INSERT INTO listed SELECT *, {_DIGEST}",
        )

    def note_read(self, ids: Sequence[str]) -> None:
        """Imports read but set aside as malformed: the table's rows of them stay, and the
        anti-join must not take them for imports the listing did not return (they would be
        fetched by id, or marked deleted)."""
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
        """The remembered rows dlt gets (see the module), with what the table held: only
        those new, changed or back are observed (`known.compare`)."""
        # an import listed twice on pages far apart (the order shifted during the listing):
        # its latest sighting only. Found first, by a statement of its own: within the join
        # below, its aggregate over every listed id overran the scratch memory at 3,000,000
        self._db.execute(
            "CREATE OR REPLACE TABLE twice AS SELECT id, max(seen_at) AS latest FROM listed"
            " GROUP BY id HAVING count(*) > 1"
        )
        reader = (
            self._db.cursor()
            .sql(
                # an import the table holds twice: compared with its live copy (marked
                # deleted only when every copy is); the rows are loaded again either way
                "WITH k AS (SELECT id, count(*) AS copies,"
                " arg_min(fingerprint, deleted_at IS NOT NULL) AS fingerprint,"
                " CASE WHEN bool_and(deleted_at IS NOT NULL) THEN max(deleted_at) END"
                " AS deleted_at, any_value(digest) AS digest, bool_or(extra) AS extra"
                " FROM known GROUP BY id)"
                " SELECT l.* EXCLUDE (digest, outside), k.fingerprint AS known_fingerprint,"
                " k.deleted_at AS known_deleted_at, coalesce(k.copies > 1"
                " OR k.digest <> l.digest OR k.extra <> l.outside, false) AS differs"
                " FROM listed l LEFT JOIN k ON k.id = l.id"
                " LEFT JOIN twice t ON t.id = l.id"
                " WHERE (t.id IS NULL OR l.seen_at = t.latest)"
                " AND (k.id IS NULL OR k.deleted_at IS NOT NULL OR k.copies > 1"
                " OR k.fingerprint <> l.fingerprint OR k.digest <> l.digest"
                " OR k.extra OR l.extra IS NOT NULL)"
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
            differs = [row.pop("differs") for row in rows]
            for row in rows:
                extra = row.pop(_EXTRA)
                if extra is not None:
                    row.update(json.loads(extra))
            yield Changed(rows, printed, seen_at, known, differs)

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
        self._folder.close()


def _extra(row: Row) -> Dict[str, Any]:
    """What of a listed row goes as JSON beside the declared columns: the fields outside
    them that hold a value (None loads nothing: kept, it would make every row differ), and
    a declared text column holding something else (`status` 3: an Arrow text column
    refuses it; dlt's normalizer decides how it loads)."""
    return {
        k: v
        for k, v in row.items()
        if v is not None and (k not in _DECLARED or (k in _TEXT and type(v) is not str))
    }


def known_table(batch: Any, table: str = TABLE_NAME) -> pa.Table:
    """A batch of `DestinationReader.copy_known` (an Arrow record batch or DB-API tuples) as
    one Arrow table of `KNOWN_SCHEMA`; `table` names the table in an error (`typed_columns`)."""
    if isinstance(batch, pa.RecordBatch):
        batch = pa.Table.from_batches([batch])
    if isinstance(batch, pa.Table):
        columns: Sequence[Any] = [batch.column(index) for index in range(len(KNOWN_SCHEMA))]
    else:
        columns = list(zip(*batch, strict=True)) if batch else [()] * len(KNOWN_SCHEMA)
    return pa.Table.from_arrays(
        [as_declared(c, field, table) for c, field in zip(columns, KNOWN_SCHEMA, strict=True)],
        schema=KNOWN_SCHEMA,
    )
