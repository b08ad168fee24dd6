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
- `TableCopy` (`table_copy`): a complete listing of an existing table: the table's rows are
  copied once into a scratch DuckDB file, the listing waits beside them, and one join at the
  end says which rows differ (only those reach dlt) and which live imports the listing did
  not return, in bounded memory whatever the history size;
- `StateKnowledge`: a destination that is not a SQL database: the state's open imports,
  deletions and newest import stand in for the table, as before this module existed.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Sequence

from .destination import DestinationReader
from .incremental import SyncState
from .records import Row, fingerprint, fingerprint_parts
from .settings import DELETED_STATUS


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


def isoformat(value: Any) -> Optional[str]:
    if value is None:
        return None
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


class Changed(NamedTuple):
    """Rows a deferred comparison found new, changed or back, with what the table held."""

    rows: List[Row]
    fingerprints: List[str]
    seen_at: List[datetime]
    known: List[Optional[Known]]
    # whether the table's row differed in a way the comparison can tell (a declared column,
    # a field on one side only, a copy): not so a row loaded only because both sides hold
    # fields outside the declared columns, which it cannot compare
    differs: List[bool]


class NothingKnown:
    """A first run into an empty destination: every import is new."""

    reconciles = False  # whether `unlisted_live_ids` can tell what a listing did not return
    deferred = False  # rows are `remember`ed and compared at the end (`changes`)

    def lookup(
        self, ids: Sequence[str], created_at: Sequence[datetime], fingerprints: Sequence[str]
    ) -> List[Optional[Known]]:
        return [None] * len(ids)

    def note_read(self, ids: Sequence[str]) -> None:
        """Imports read but not compared (set aside as malformed): not unlisted."""

    def remember(self, rows: List[Row], fingerprints: List[str], seen_at: List[datetime]) -> None:
        raise NotImplementedError  # only a `deferred` knowledge remembers

    def shares_imports(self) -> bool:
        return False  # `deferred` only: the intake counts what it compared itself

    def changes(self, rows_per_batch: int) -> Iterator[Changed]:
        return iter(())

    def unlisted_live_ids(self) -> Iterator[List[str]]:
        return iter(())

    def close(self) -> None:
        """Nothing to release."""


class TableLookups(NothingKnown):
    """One query per page (or per import fetched by id) for the ids it holds."""

    def __init__(self, reader: DestinationReader, columns: List[str]) -> None:
        self.reader = reader
        self.columns = columns

    def lookup(
        self, ids: Sequence[str], created_at: Sequence[datetime], fingerprints: Sequence[str]
    ) -> List[Optional[Known]]:
        found: Dict[str, Known] = {}
        for row in self.reader.known_rows(sorted(set(ids)), self.columns):
            found[row["id"]] = Known(fingerprint(row), isoformat(row["deleted_at"]))
        return [found.get(import_id) for import_id in ids]


class StateKnowledge(NothingKnown):
    """A destination without SQL: the state's open imports and deletions are what is known;
    an import it does not name is new when created after the newest import seen (or in that
    instant under an id not seen), as before otherwise."""

    def __init__(self, state: SyncState) -> None:
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
