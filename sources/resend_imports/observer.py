"""What one run saw, turned into the state the next run starts from (`SyncState`).

The run tells its observer every import it listed (in listing order), fetched by id, found
missing, marked deleted, read back after a deletion, or set aside; `next_state` decides from
that what the next run refreshes and how: open imports near the top of the list by paging
down to them, those deep in history by id, whichever costs fewer requests (`imports_to_page`).
"""

import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Dict, List, Optional, Set, Tuple

from .incremental import RECHECK_DELETED_DAYS, DeletedImport, OpenImport, SyncState
from .records import Row, fingerprint, is_terminal


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


def _open_import(row: Row, refresh_by_id: bool) -> OpenImport:
    return OpenImport(
        created_at=row["created_at"].isoformat(),
        status=str(row.get("status")),
        fingerprint=fingerprint(row),
        refresh_by_id=refresh_by_id,
    )
