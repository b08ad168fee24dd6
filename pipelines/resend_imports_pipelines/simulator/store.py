"""The simulated account: contact imports, their life cycle and the list semantics of Resend."""

import random
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Dict, List, Optional, Tuple

from .imports import TIMESTAMP_STYLES, SimImport, truncate

STATUSES = ("queued", "in_progress", "completed", "failed")
# The clock of an account by default: fixed, so that a seed alone gives the same account (the
# tests, the benchmarks). The demo and `python -m resend_imports_pipelines.simulator` start at
# the real clock.
HISTORY_END = datetime(2026, 11, 1, tzinfo=UTC)
# How imports end, as in an account that works: most lose a few rows (bounced or invalid
# addresses), a few a large share (a bad file), and few fail outright. Alert rules then fire
# on the few that need a person, as they would on a real account.
FAILED_IMPORTS = 0.02
BAD_FILES = 0.03


class ValidationError(Exception):
    """A request the API would answer with `validation_error`."""


class ImportStore:
    """Imports of one Resend team, newest first, with a clock that tests move forward.

    Args:
        imports: How many imports the history starts with.
        seed: Seed of every random choice: the same seed gives the same account.
        stuck: Old imports left open forever (queued or in progress deep in history).
        tie_rate: Share of imports created in the same instant as the one before.
        styles: Timestamp formats to mix.
        history_end: The clock when the account is created (its newest import is older):
            `datetime.now(UTC)` for an account that lives in the present, as the demo's.
            Import ids depend on it too: two accounts of one seed with different clocks
            share no id, so a simulator started again never hands out an id it gave before
            for another import.
    """

    def __init__(
        self,
        imports: int = 1000,
        seed: int = 0,
        stuck: Optional[int] = None,
        tie_rate: float = 0.05,
        styles: Tuple[str, ...] = TIMESTAMP_STYLES,
        history_end: datetime = HISTORY_END,
    ) -> None:
        self.lock = threading.RLock()
        self._history_end = history_end
        self._initial = (imports, seed, stuck)
        self._rng = random.Random(seed)
        self._ids = _id_source(seed, history_end)
        self._tie_rate = tie_rate
        self._styles = styles
        self._items: List[SimImport] = []  # newest first
        self._index: Dict[str, int] = {}
        self._stuck: set[str] = set()
        self._deleted: Dict[str, SimImport] = {}
        self._seed_history(imports, imports // 2000 + 1 if stuck is None else stuck)

    # -- building the account -------------------------------------------------------
    def _new_import(self, created_at: datetime) -> SimImport:
        style = self._rng.choice(self._styles)
        import_id = str(uuid.UUID(int=self._ids.getrandbits(128), version=4))
        return SimImport(import_id, truncate(created_at, style), style)

    def _created_times(self, count: int, end: datetime, mean_gap: float) -> List[datetime]:
        """`count` creation times before `end`, oldest first, some of them tied."""
        times: List[datetime] = []
        moment = end
        for _ in range(count):
            if not times or self._rng.random() >= self._tie_rate:
                moment -= timedelta(seconds=self._rng.expovariate(1 / mean_gap))
            times.append(moment)
        return list(reversed(times))

    def _seed_history(self, count: int, stuck: int) -> None:
        self.now = self._history_end
        created: List[SimImport] = []
        for moment in self._created_times(count, self.now, mean_gap=300.0):
            item = self._new_import(moment)
            age = (self.now - item.created_at).total_seconds()
            if age > 900:
                self._finish(item, item.created_at + timedelta(seconds=self._rng.uniform(5, 600)))
            elif age > 300:
                self._start(item)
            created.append(item)
        old = [i for i in created if (self.now - i.created_at).total_seconds() > 86400]
        for item in self._rng.sample(old, min(stuck, len(old))):
            item.status, item.completed_at, item.counts = "queued", None, None
            if self._rng.random() < 0.5:
                self._start(item)
            self._stuck.add(item.id)
        self._items = sorted(created, key=SimImport.sort_key, reverse=True)
        self._reindex()

    def _reindex(self) -> None:
        self._index = {item.id: position for position, item in enumerate(self._items)}

    def _start(self, item: SimImport) -> None:
        item.status = "in_progress"
        if self._rng.random() < 0.5:
            total = self._rng.randint(10, 5000)
            item.counts = {"total": total, "created": 0, "updated": 0, "skipped": 0, "failed": 0}

    def _finish(self, item: SimImport, at: datetime) -> None:
        total = self._rng.randint(1, 5000)
        if self._rng.random() < BAD_FILES:
            failed = self._rng.randint(total // 20, total // 2)
        else:
            failed = self._rng.randint(0, total // 100)
        skipped = self._rng.randint(0, (total - failed) // 10)
        updated = self._rng.randint(0, total - failed - skipped)
        item.counts = {
            "total": total,
            "created": total - failed - skipped - updated,
            "updated": updated,
            "skipped": skipped,
            "failed": failed,
        }
        item.status = "failed" if self._rng.random() < FAILED_IMPORTS else "completed"
        item.completed_at = truncate(max(at, item.created_at), item.style)

    def reset(self) -> None:
        """Back to the account as it was created (same seed, same imports)."""
        imports, seed, stuck = self._initial
        with self.lock:
            self._rng = random.Random(seed)
            self._ids = _id_source(seed, self._history_end)
            self._stuck = set()
            self._deleted = {}
            self._seed_history(imports, imports // 2000 + 1 if stuck is None else stuck)

    def warm(self) -> None:
        """Encodes every import now, so that no client pays for it while being timed."""
        with self.lock:
            for item in self._items:
                item.encoded()

    # -- time passes -----------------------------------------------------------------
    def advance(self, new: int = 30, seconds: float = 600.0) -> Dict[str, int]:
        """Moves the clock: open imports progress (stuck ones stay), `new` imports arrive."""
        with self.lock:
            before = self.now
            self.now += timedelta(seconds=seconds)
            progressed = 0
            for item in self._items:
                if item.status in ("completed", "failed") or item.id in self._stuck:
                    continue
                if item.status == "queued":
                    self._start(item)
                else:
                    self._finish(item, self.now - timedelta(seconds=self._rng.uniform(0, seconds)))
                progressed += 1
            mean_gap = max(seconds / max(new, 1), 0.001)
            newest = self._items[0] if self._items else None
            arrivals: List[SimImport] = []
            for moment in self._created_times(new, self.now, mean_gap):
                item = self._new_import(max(moment, before))
                if newest is not None and item.created_at < newest.created_at:
                    # never older than what exists: created_at is when Resend stored it
                    item.created_at, item.style = newest.created_at, newest.style
                if self._rng.random() < 0.3:
                    self._start(item)
                arrivals.append(item)
                newest = item
            self._items = sorted(arrivals + self._items, key=SimImport.sort_key, reverse=True)
            self._reindex()
            return {"progressed": progressed, "new": new}

    def set_status(self, import_id: str, status: str) -> None:
        """Forces a status, e.g. one Resend might add later; the import stays open."""
        with self.lock:
            self._items[self._index[import_id]].status = status

    def delete(self, import_id: str) -> None:
        """Deletes an import, as a user can in Resend: gone from the list and from GET."""
        with self.lock:
            item = self._items.pop(self._index[import_id])
            self._deleted[import_id] = item
            self._reindex()

    def undelete(self, import_id: str) -> None:
        """Brings a deleted import back, as it was."""
        with self.lock:
            item = self._deleted.pop(import_id)
            self._items = sorted([item, *self._items], key=SimImport.sort_key, reverse=True)
            self._reindex()

    def insert(
        self,
        created_at: datetime,
        status: str = "queued",
        counts: Optional[Dict[str, int]] = None,
        import_id: Optional[str] = None,
    ) -> str:
        """Adds an import created at `created_at`, e.g. one that becomes visible late (below
        the newest one a sync has seen); returns its id."""
        with self.lock:
            item = self._new_import(created_at)
            if import_id is not None:
                item.id = import_id
            item.status, item.counts = status, counts
            if status in ("completed", "failed"):
                item.completed_at = truncate(max(self.now, item.created_at), item.style)
            self._items = sorted([item, *self._items], key=SimImport.sort_key, reverse=True)
            self._reindex()
            return item.id

    def set_field(self, import_id: str, **values: Any) -> None:
        """Changes fields of an import in place, e.g. a terminal one that Resend corrected."""
        with self.lock:
            item = self._items[self._index[import_id]]
            for name, value in values.items():
                setattr(item, name, value)

    # -- reading ---------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._items)

    def truth(self) -> List[Dict[str, Any]]:
        """Every import as the API returns it now, newest first."""
        with self.lock:
            return [item.to_json() for item in self._items]

    def open_ids(self) -> List[str]:
        with self.lock:
            return [i.id for i in self._items if i.status not in ("completed", "failed")]

    def get(self, import_id: str) -> Optional[Dict[str, Any]]:
        with self.lock:
            position = self._index.get(import_id)
            return None if position is None else self._items[position].to_json()

    def list(
        self,
        limit: int,
        after: Optional[str] = None,
        before: Optional[str] = None,
        status: Optional[str] = None,
    ) -> Tuple[List[Dict[str, Any]], bool]:
        """One page of the newest-first list, with Resend's cursor rules."""
        page, has_more = self.list_items(limit, after, before, status)
        return [item.to_json() for item in page], has_more

    def list_items(
        self,
        limit: int,
        after: Optional[str] = None,
        before: Optional[str] = None,
        status: Optional[str] = None,
    ) -> Tuple[List[SimImport], bool]:
        """`list`, as the imports themselves (their JSON may be encoded once and reused)."""
        if after is not None and before is not None:
            raise ValidationError("`after` and `before` cannot be used together")
        with self.lock:
            for cursor in (after, before):
                if cursor is not None and cursor not in self._index:
                    raise ValidationError(f"the cursor {cursor} does not exist")
            if before is not None:
                newer = self._items[: self._index[before]]
                matching = [i for i in newer if status is None or i.status == status]
                return matching[-limit:], len(matching) > limit
            start = 0 if after is None else self._index[after] + 1
            if status is None:
                return self._items[start : start + limit], start + limit < len(self._items)
            page: List[SimImport] = []
            for item in self._items[start:]:
                if item.status == status:
                    if len(page) == limit:
                        return page, True
                    page.append(item)
            return page, False


def _id_source(seed: int, history_end: datetime) -> random.Random:
    """Where the import ids of an account come from: its seed and its clock."""
    return random.Random(f"{seed}@{history_end.isoformat()}")
