"""What a run compares each import it reads with: the row the table holds for it.

An import is *new* when the table does not hold it, *changed* when the table holds it with
another status or other counts (or marked deleted), and *as before* otherwise; whichever path
found it (a listing, a GET by id, a late arrival below the newest import seen, a complete
listing deep in history), the history, the alert rules and the summary see the same thing.
The table, not the state, is the reference: a state that describes another copy of the
table, another account or a table a person emptied cannot make a change go unrecorded.

Where the table is read from depends on the run:
- `NothingKnown`: a first run into an empty destination (nothing to read);
- `TableLookups`: short runs (incremental, filtered): one query per page for its ids;
- `TableCopy`: a complete listing of an existing table: the table's ids, statuses and counts
  are copied once into a scratch DuckDB file, the listing is remembered beside them, and one
  join at the end says what changed and which live imports the listing did not return, in
  bounded memory whatever the history size;
- `StateKnowledge`: a destination that is not a SQL database: the state's open imports,
  deletions and newest import stand in for the table, as before this module existed.
"""

import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Sequence, Set

from .destination import DestinationReader
from .incremental import SyncState
from .records import fingerprint, fingerprint_parts
from .settings import COUNT_FIELDS, DELETED_STATUS

SCRATCH_ROWS_PER_BATCH = 50_000
SCRATCH_MEMORY_LIMIT = "64MB"


@dataclass(frozen=True)
class Known:
    """What the table holds of one import."""

    fingerprint: str  # `records.fingerprint` of its row
    deleted_at: Optional[str] = None  # ISO text when the table holds it as deleted

    @property
    def status(self) -> Optional[str]:
        return fingerprint_parts(self.fingerprint)[0] or None


class Comparison(NamedTuple):
    """Rows read by a run compared with what the table holds, row for row."""

    observed: List[bool]  # new, changed, or back after a deletion: a history row
    previous_status: List[Optional[str]]  # None for a new import, `deleted` for one back
    before: List[Optional[str]]  # fingerprint before (status before a deletion), for alerts
    key_suffix: List[str]  # keeps a return after a deletion apart in the history


def compare(fingerprints: Sequence[str], known: Sequence[Optional[Known]]) -> Comparison:
    """The one rule of what a run observes (`Comparison`)."""
    result = Comparison([], [], [], [])
    for current, previous in zip(fingerprints, known, strict=True):
        if previous is None:
            result.observed.append(True)
            result.previous_status.append(None)
            result.before.append(None)
            result.key_suffix.append("")
        elif previous.deleted_at is not None:
            result.observed.append(True)
            result.previous_status.append(DELETED_STATUS)
            result.before.append(previous.fingerprint)
            result.key_suffix.append(f"|back after {previous.deleted_at}")
        else:
            result.observed.append(previous.fingerprint != current)
            result.previous_status.append(previous.status or "")
            result.before.append(previous.fingerprint)
            result.key_suffix.append("")
    return result


def _isoformat(value: Any) -> Optional[str]:
    if value is None:
        return None
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


class NothingKnown:
    """A first run into an empty destination: every import is new."""

    reconciles = False  # whether `unlisted_live_ids` can tell what a listing did not return
    deferred = False  # rows are `remember`ed and compared at the end (`changes`)

    def __init__(self, history: Optional[DestinationReader] = None) -> None:
        self._history = history  # where observations already recorded can be asked for

    def recorded(self, keys: Sequence[str]) -> Set[str]:
        """Those of these observation keys the history table holds already: an alert on an
        observation recorded before (the table was emptied or edited by a person, the state
        lost) is no news."""
        if self._history is None or not keys:
            return set()
        return self._history.recorded_observations(list(keys))

    def lookup(
        self, ids: Sequence[str], created_at: Sequence[datetime], fingerprints: Sequence[str]
    ) -> List[Optional[Known]]:
        return [None] * len(ids)

    def note_read(self, ids: Sequence[str]) -> None:
        """Imports read but not compared (set aside as malformed): not unlisted."""

    def remember(self, table: Any, fingerprints: List[str], seen_at: List[datetime]) -> None:
        raise NotImplementedError  # only a `deferred` knowledge remembers

    def shares_imports(self) -> bool:
        return False  # `deferred` only: the intake counts what it compared itself

    def changes(self, rows_per_batch: int) -> Iterator[Any]:
        return iter(())

    def unlisted_live_ids(self) -> Iterator[List[str]]:
        return iter(())

    def close(self) -> None:
        """Nothing to release."""


class TableLookups(NothingKnown):
    """One query per page (or per import fetched by id) for the ids it holds."""

    def __init__(self, reader: DestinationReader, columns: List[str], history: bool) -> None:
        super().__init__(reader if history else None)
        self.reader = reader
        self.columns = columns

    def lookup(
        self, ids: Sequence[str], created_at: Sequence[datetime], fingerprints: Sequence[str]
    ) -> List[Optional[Known]]:
        found: Dict[str, Known] = {}
        for row in self.reader.known_rows(sorted(set(ids)), self.columns):
            found[row["id"]] = Known(fingerprint(row), _isoformat(row["deleted_at"]))
        return [found.get(import_id) for import_id in ids]


class TableCopy(NothingKnown):
    """A complete listing of an existing table, compared with it once, at the end.

    The table's ids, statuses and counts are copied into a scratch DuckDB file when the
    listing starts; each batch of the listing is remembered there as it goes by (the rows
    themselves are handed to dlt at once); at the end one join tells what is new, changed or
    back (`changes`), and one anti-join which live imports the listing did not return
    (`unlisted_live_ids`). Memory stays within the scratch database's limit, spilling to its
    folder, whatever the number of imports.
    """

    reconciles = True
    deferred = True

    def __init__(self, reader: DestinationReader, columns: List[str], history: bool) -> None:
        import duckdb

        super().__init__(reader if history else None)
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
            counts = ", ".join(f"counts__{name} BIGINT" for name in COUNT_FIELDS)
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
            + [f"coalesce(CAST(counts__{name} AS VARCHAR), '')" for name in COUNT_FIELDS]
        )
        self._insert(
            "batch", batch, f"INSERT INTO known SELECT id, concat_ws('|', {parts}), deleted_at"
        )

    def _insert(self, name: str, table: Any, statement: str) -> None:
        self._db.register(name, table)
        try:
            self._db.execute(f"{statement} FROM {name}")
        finally:
            self._db.unregister(name)

    def remember(self, table: Any, fingerprints: List[str], seen_at: List[datetime]) -> None:
        """Rows of the listing (an Arrow table of `contact_imports` columns), to compare."""
        import pyarrow as pa

        columns = ["id", "status", *(f"counts__{name}" for name in COUNT_FIELDS)]
        rows = table.select([*columns, "created_at", "completed_at"])
        rows = rows.append_column("fingerprint", pa.array(fingerprints, pa.string()))
        rows = rows.append_column(
            "seen_at", pa.array(seen_at, table.schema.field("created_at").type)
        )
        self._insert("remembered", rows, "INSERT INTO listed SELECT *")

    def note_read(self, ids: Sequence[str]) -> None:
        import pyarrow as pa

        read = pa.table({"id": pa.array(list(ids), pa.string())})
        self._insert("read_ids", read, "INSERT INTO read_only SELECT id")

    def shares_imports(self) -> bool:
        """Whether the listing returned an import the table holds live."""
        found = self._db.execute(
            "SELECT EXISTS (SELECT 1 FROM listed l JOIN known k ON k.id = l.id"
            " WHERE k.deleted_at IS NULL)"
        ).fetchall()
        return bool(found[0][0])

    def changes(self, rows_per_batch: int) -> Iterator[Any]:
        """The remembered rows that are new, changed or back, with what the table held
        (`known_fingerprint`, `known_deleted_at`), in Arrow tables."""
        reader = (
            self._db.cursor()
            .sql(
                "SELECT l.*, k.fingerprint AS known_fingerprint, k.deleted_at AS known_deleted_at"
                " FROM listed l LEFT JOIN known k ON k.id = l.id"
                " WHERE k.id IS NULL OR k.deleted_at IS NOT NULL OR k.fingerprint <> l.fingerprint"
            )
            .to_arrow_reader(rows_per_batch)
        )
        import pyarrow as pa

        for batch in reader:
            yield pa.Table.from_batches([batch])

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


class StateKnowledge(NothingKnown):
    """A destination without SQL: the state's open imports and deletions are what is known;
    an import it does not name is new when created after the newest import seen (or in that
    instant under an id not seen), as before otherwise."""

    def __init__(self, state: SyncState) -> None:
        super().__init__()
        self.state = state
        newest = state.newest_created_at
        self.newest = datetime.fromisoformat(newest) if newest else None

    def lookup(
        self, ids: Sequence[str], created_at: Sequence[datetime], fingerprints: Sequence[str]
    ) -> List[Optional[Known]]:
        known: List[Optional[Known]] = []
        for import_id, created, printed in zip(ids, created_at, fingerprints, strict=True):
            deleted = self.state.deleted.get(import_id)
            opened = self.state.open_imports.get(import_id)
            if deleted is not None:
                known.append(Known(f"{deleted.status or ''}|||||", deleted.deleted_at))
            elif opened is not None:
                known.append(Known(opened.fingerprint))
            elif (
                self.newest is None
                or created > self.newest
                or (created == self.newest and import_id not in self.state.newest_ids)
            ):
                known.append(None)
            else:
                known.append(Known(printed))
        return known
