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
  the key that loaded it (a salted fingerprint) must be the key of this run (see `checks`).
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Dict, List, MutableMapping, Optional

STATE_VERSION = 1
# where the states of accounts other than `default` live, beside its own (see `accounts`)
ACCOUNTS_KEY = "accounts"
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
    # why the table must be listed whole (a column a person dropped, added again empty),
    # kept until a run that lists every import saves its state (a filtered run does not)
    repair_owed: Optional[str] = None

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
            repair_owed=stored.get("repair_owed"),
        )

    def save(self, stored: MutableMapping[str, Any]) -> None:
        others = stored.get(ACCOUNTS_KEY)  # the other accounts' states, kept as they are
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
        if self.repair_owed is not None:
            stored["repair_owed"] = self.repair_owed
        if others is not None:
            stored[ACCOUNTS_KEY] = others


def _fingerprint_of_older_states(older: str) -> str:
    """`records.fingerprint` from the form states held before: `status|count,count,...`
    with `None` for what was absent."""
    status, counts = older.split("|", 1)
    parts = [status, *counts.split(",")]
    return "|".join("" if part == "None" else part for part in parts)
