"""Incremental state that stays correct on mutable imports.

The list is newest first and imports change until they are terminal. The state keeps every
import that was still open at the last run. Open imports near the top of the list are
refreshed by paging again down to the oldest of them (the *frontier*); open imports deep in
history are refreshed one by one with `GET /contacts/imports/{id}`, whichever costs fewer
requests. With nothing open, the frontier is the newest `created_at` seen, so a quiet run
costs one request.

What this assumes, and what covers the rest:
- A terminal import does not change, and imports are created newest first: the frontier
  never re-reads history below it. A complete listing (the first run, `--full-refresh`, and
  every `full_refresh_every_days`) re-reads everything and finds changed terminal imports
  and deletions deep in history.
- An open import the listing should have returned and did not, or that answers 404 when
  fetched by id, is not dropped: it is fetched by id on every run until it answers again,
  and concluded gone after `gone_after_runs` consecutive 404s (at once when a complete
  listing also omits it).
- An import concluded gone is re-checked by id on every run for `RECHECK_DELETED_DAYS`, so
  that a 404 streak that was not a deletion heals within a run; if it comes back, the history
  records it (previous status `deleted`).
- The state belongs to the table: each run records its own id and the id of the run it
  continued from, so a pending load package can be told apart from one extracted against
  another copy of the table (see `destination`).
- The state is a cache, checked at every run: what is new or changed is decided against the
  table itself (`known`), the live imports the state counted must still be in the table, and
  the key that loaded it (a salted fingerprint) must be the key of this run (see `run`).
"""

import math
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Dict, List, MutableMapping, Optional, Set, Tuple

from .records import Row, fingerprint, is_terminal
from .settings import TERMINAL_STATUSES

STATE_VERSION = 1
RECHECK_DELETED_DAYS = 7


@dataclass
class OpenImport:
    """An import seen open at the last run."""

    created_at: str
    status: str
    fingerprint: str  # `records.fingerprint`: its status and counts then
    refresh_by_id: bool  # True: fetched by id each run; False: the listing pages down to it
    missing_runs: int = 0  # consecutive runs in which it answered 404

    @classmethod
    def from_stored(cls, stored: Dict[str, Any]) -> "OpenImport":
        stored = dict(stored)
        if "by_get" in stored:  # the name in states saved before it was renamed
            stored["refresh_by_id"] = stored.pop("by_get")
            stored["fingerprint"] = _fingerprint_of_older_states(stored["fingerprint"])
        return cls(**stored)


@dataclass
class DeletedImport:
    """An import this connector marked deleted, re-checked by id for a while."""

    deleted_at: str
    status: Optional[str] = None  # its status when it was marked deleted, when known


@dataclass
class SyncState:
    """What one run leaves for the next, stored in dlt resource state (plain JSON)."""

    newest_created_at: Optional[str] = None
    newest_ids: List[str] = field(default_factory=list)
    open_imports: Dict[str, OpenImport] = field(default_factory=dict)
    deleted: Dict[str, DeletedImport] = field(default_factory=dict)
    run_id: Optional[str] = None  # the run that saved this state
    parent_run_id: Optional[str] = None  # the run whose state that run started from
    complete_listing_at: Optional[str] = None  # when a run last listed every import
    open_alerted: List[str] = field(default_factory=list)  # alerted as open too long
    alerts_since: Optional[str] = None  # when alerts were turned on (None: off, or not yet)
    # live imports the table holds after the run (None: unknown, e.g. no SQL to count with);
    # a table that holds fewer was emptied, dropped or replaced by someone else
    live_imports: Optional[int] = None
    # which API key loaded the table, as a salted hash (`ResendClient.key_fingerprint`)
    key_salt: Optional[str] = None
    key_fingerprint: Optional[str] = None

    @property
    def is_empty(self) -> bool:
        return self.newest_created_at is None

    def continues(self, committed: "SyncState") -> bool:
        """Whether this (local) state was saved by the run that `committed` is, or by a run
        that started from it: only then may a load package extracted with it be loaded."""
        return committed.run_id in (self.run_id, self.parent_run_id)

    def complete_listing_due(self, now: datetime, every_days: float) -> bool:
        """Whether a periodic complete listing is due (never when `every_days` is 0; the
        clock starts at the first run that records it, so an upgrade does not list all)."""
        if every_days <= 0 or self.is_empty or self.complete_listing_at is None:
            return False
        last = datetime.fromisoformat(self.complete_listing_at)
        return now - last >= timedelta(days=every_days)

    def frontier(self) -> Optional[datetime]:
        """Oldest `created_at` that the next listing must reach, inclusive."""
        paged = [o.created_at for o in self.open_imports.values() if not o.refresh_by_id]
        oldest = min(paged, key=datetime.fromisoformat) if paged else self.newest_created_at
        return datetime.fromisoformat(oldest) if oldest else None

    def ids_refreshed_by_id(self) -> List[str]:
        """Open imports refreshed one by one rather than by paging."""
        return [import_id for import_id, o in self.open_imports.items() if o.refresh_by_id]

    def changes_from(self, other: "SyncState") -> bool:
        """Whether this state says something `other` does not (run ids aside)."""
        mine = {k: v for k, v in vars(self).items() if k not in ("run_id", "parent_run_id")}
        theirs = {k: v for k, v in vars(other).items() if k not in ("run_id", "parent_run_id")}
        return mine != theirs

    @classmethod
    def load(cls, stored: MutableMapping[str, Any]) -> "SyncState":
        if stored.get("version") != STATE_VERSION:
            return cls()
        return cls(
            newest_created_at=stored.get("newest_created_at"),
            newest_ids=list(stored.get("newest_ids", [])),
            open_imports={
                k: OpenImport.from_stored(v) for k, v in stored.get("open_imports", {}).items()
            },
            deleted={k: DeletedImport(**v) for k, v in stored.get("deleted", {}).items()},
            run_id=stored.get("run_id"),
            parent_run_id=stored.get("parent_run_id"),
            complete_listing_at=stored.get("complete_listing_at"),
            open_alerted=list(stored.get("open_alerted", [])),
            alerts_since=stored.get("alerts_since"),
            live_imports=stored.get("live_imports"),
            key_salt=stored.get("key_salt"),
            key_fingerprint=stored.get("key_fingerprint"),
        )

    def save(self, stored: MutableMapping[str, Any]) -> None:
        stored.clear()
        stored.update(
            {
                "version": STATE_VERSION,
                "newest_created_at": self.newest_created_at,
                "newest_ids": self.newest_ids,
                "open_imports": {k: vars(v) for k, v in self.open_imports.items()},
                "deleted": {k: vars(v) for k, v in self.deleted.items()},
                "run_id": self.run_id,
                "parent_run_id": self.parent_run_id,
                "complete_listing_at": self.complete_listing_at,
                "open_alerted": self.open_alerted,
                "alerts_since": self.alerts_since,
                "live_imports": self.live_imports,
                "key_salt": self.key_salt,
                "key_fingerprint": self.key_fingerprint,
            }
        )


def imports_to_page(positions: List[int], page_size: int) -> int:
    """How many open imports, by listing position, to refresh by paging; the rest by GET.

    Covering the open imports up to the i-th costs the pages needed to reach it; every
    import left out costs one GET. Picks the cheapest; on a tie, fewer pages.
    """
    ordered = sorted(positions)
    best_count, best_cost = 0, 1 + len(ordered)
    for index, position in enumerate(ordered):
        pages = math.ceil((position + 1) / page_size)
        cost = pages + len(ordered) - index - 1
        if cost < best_cost:
            best_count, best_cost = index + 1, cost
    return best_count


class RunObserver:
    """Collects what one run saw and turns it into the next state."""

    def __init__(self, page_size: int) -> None:
        self.page_size = page_size
        self.newest: Optional[datetime] = None
        self.newest_ids: Set[str] = set()
        self._open_listed: List[tuple[int, str, Row]] = []
        self._open_fetched: List[Row] = []
        self._not_found: Dict[str, OpenImport] = {}
        self._deleted: Dict[str, DeletedImport] = {}
        self._back: Set[str] = set()
        self._quarantined: Set[str] = set()
        self._watched_malformed: Dict[str, datetime] = {}
        self._not_rechecked: Set[str] = set()
        self._position = 0

    # What a listing showed, in two forms that `tests/test_columnar.py` proves equal.

    def listed(self, row: Row) -> None:
        """One listed row, in listing order."""
        created_at: datetime = row["created_at"]
        if self.newest is None or created_at > self.newest:
            self.newest, self.newest_ids = created_at, {row["id"]}
        elif created_at == self.newest:
            self.newest_ids.add(row["id"])
        if not is_terminal(row.get("status")):
            self._open_listed.append((self._position, row["id"], row))
        self._position += 1

    def listed_table(self, table: Any) -> None:
        """`listed` for every row of an Arrow table of listed rows, in listing order."""
        import pyarrow as pa
        import pyarrow.compute as pc

        from .arrow import rows_at

        if table.num_rows == 0:
            return
        created = table.column("created_at")
        newest = pc.max(created).as_py()
        newest_ids = table.column("id").filter(pc.equal(created, newest)).to_pylist()
        if self.newest is None or newest > self.newest:
            self.newest, self.newest_ids = newest, set(newest_ids)
        elif newest == self.newest:
            self.newest_ids.update(newest_ids)
        terminal = pc.is_in(table.column("status"), value_set=pa.array(sorted(TERMINAL_STATUSES)))
        open_at = pc.indices_nonzero(pc.invert(pc.fill_null(terminal, False))).to_pylist()
        for offset, row in zip(open_at, rows_at(table, open_at), strict=True):
            self._open_listed.append((self._position + offset, row["id"], row))
        self._position += table.num_rows

    def fetched(self, row: Row) -> None:
        if not is_terminal(row.get("status")):
            self._open_fetched.append(row)

    def not_found(self, import_id: str, known: OpenImport) -> None:
        """An open import that answered 404 and is not yet concluded gone: it stays watched
        by id, one more consecutive 404 counted."""
        self._not_found[import_id] = OpenImport(
            known.created_at,
            known.status,
            known.fingerprint,
            refresh_by_id=True,
            missing_runs=known.missing_runs + 1,
        )

    def deleted(
        self, import_id: str, deleted_at: datetime, status: Optional[str], recheck: bool = True
    ) -> None:
        """An import this run marked deleted, and its status then; re-checked by id on the
        next runs unless `recheck` is False (another account's: it cannot come back)."""
        self._deleted[import_id] = DeletedImport(deleted_at.isoformat(), status)
        if not recheck:
            self._not_rechecked.add(import_id)

    def back(self, import_id: str) -> None:
        """An import marked deleted that this run read again."""
        self._back.add(import_id)

    def quarantined(self, import_id: str, watch: bool, created_at: datetime) -> None:
        """An import this run read malformed: an open one stays watched as it was; with
        `watch`, one the state does not know is watched by id from now on."""
        self._quarantined.add(import_id)
        if watch:
            self._watched_malformed.setdefault(import_id, created_at)

    @property
    def returned(self) -> Set[str]:
        return self._back

    def open_rows(self) -> List[Row]:
        """The latest row of each open import this run read (listed or fetched by id)."""
        latest = {import_id: row for _, import_id, row in self._open_listed}
        latest.update((row["id"], row) for row in self._open_fetched)
        return list(latest.values())

    def next_state(
        self,
        previous: SyncState,
        now: Optional[datetime] = None,
        complete_listing: bool = False,
        open_alerted: Optional[Set[str]] = None,
        alerts_since: Optional[str] = None,
        live_imports: Optional[int] = None,
        key: Tuple[Optional[str], Optional[str]] = (None, None),
    ) -> SyncState:
        """The state after this run; keeps the previous newest when nothing was listed.

        `open_alerted`: the imports alerted as open too long (kept while they stay open);
        `alerts_since`: when alerts were turned on, None while they are off; `live_imports`:
        the live imports the table holds after this run; `key`: salt and fingerprint of the
        API key that loaded it.
        """
        now = now or datetime.now(UTC)
        if self.newest is None:
            state = SyncState(previous.newest_created_at, previous.newest_ids)
        else:
            state = SyncState(self.newest.isoformat(), sorted(self.newest_ids))
        state.complete_listing_at = (
            now.isoformat()
            if complete_listing or previous.complete_listing_at is None
            else previous.complete_listing_at
        )
        recheck_since = now - timedelta(days=RECHECK_DELETED_DAYS)
        state.deleted = {
            import_id: deleted
            for import_id, deleted in {**previous.deleted, **self._deleted}.items()
            if import_id not in self._back
            and import_id not in self._not_rechecked
            and datetime.fromisoformat(deleted.deleted_at) >= recheck_since
        }
        state.open_imports.update(self._not_found)
        positions = [position for position, _, _ in self._open_listed]
        paged_count = imports_to_page(positions, self.page_size)
        for index, (_, import_id, row) in enumerate(sorted(self._open_listed, key=lambda o: o[0])):
            state.open_imports[import_id] = _open_import(row, refresh_by_id=index >= paged_count)
        for row in self._open_fetched:
            state.open_imports[row["id"]] = _open_import(row, refresh_by_id=True)
        for import_id in self._quarantined:
            if import_id in state.open_imports:
                continue
            kept = previous.open_imports.get(import_id)
            if kept is not None:
                state.open_imports[import_id] = OpenImport(
                    kept.created_at, kept.status, kept.fingerprint, refresh_by_id=True
                )
            elif import_id in self._watched_malformed:
                created_at = self._watched_malformed[import_id].isoformat()
                state.open_imports[import_id] = OpenImport(created_at, "", "", refresh_by_id=True)
        for import_id in self._deleted:
            state.open_imports.pop(import_id, None)
        alerted = previous.open_alerted if open_alerted is None else open_alerted
        state.open_alerted = sorted(set(alerted) & state.open_imports.keys())
        state.alerts_since = alerts_since
        state.live_imports = live_imports
        state.key_salt, state.key_fingerprint = key
        # a new run id only when something changed: a quiet run commits no new state
        if state.changes_from(previous):
            state.run_id, state.parent_run_id = uuid.uuid4().hex, previous.run_id
        else:
            state.run_id, state.parent_run_id = previous.run_id, previous.parent_run_id
        return state


def _fingerprint_of_older_states(older: str) -> str:
    """`records.fingerprint` from the form states held before: `status|count,count,...`
    with `None` for what was absent."""
    status, counts = older.split("|", 1)
    parts = [status, *counts.split(",")]
    return "|".join("" if part == "None" else part for part in parts)


def _open_import(row: Row, refresh_by_id: bool) -> OpenImport:
    return OpenImport(
        created_at=row["created_at"].isoformat(),
        status=str(row.get("status")),
        fingerprint=fingerprint(row),
        refresh_by_id=refresh_by_id,
    )
