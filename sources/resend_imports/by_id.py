"""The fetch-by-id step of a run: every import the listing did not show that the run must
still read, each with why it is fetched and what a 404 means for it.

After the listing, a run asks by id, in this order, for:
- the imports open at the last run that it did not read: a 404 is one more consecutive miss
  (`MISSED`), and the import is concluded gone after `gone_after_runs` of them, or at once
  when a complete listing also omitted it (`GONE`);
- the imports marked deleted lately (`RECHECK_DELETED_DAYS`), after a listing that was not
  complete: one that answers was not deleted; a 404 keeps it deleted (`STILL_DELETED`);
- after a complete listing, the live imports of the table it did not return (`GONE`).
An id read already in this run (listed, set aside, or fetched for another reason) is not
asked for again. Under another account's key nothing is asked: the listing is that
account's, and every id it did not return is taken as answering 404.
"""

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Iterable, Iterator, List, Optional, Set

from .client import ResendClient
from .incremental import OpenImport, SyncState
from .intake import Intake
from .known import NothingKnown
from .observer import RunObserver
from .sync_report import SyncReport

logger = logging.getLogger("resend_imports")


class If404(Enum):
    """What an import answering 404 is concluded to be."""

    GONE = "gone: marked deleted"
    MISSED = "missed once more: still watched by id"
    STILL_DELETED = "still deleted"


@dataclass(frozen=True)
class ById:
    """An import to fetch by id."""

    import_id: str
    why: str
    if_404: If404
    watched: Optional[OpenImport] = None  # an open import: what the state knows of it


def wanted(
    previous: SyncState, complete: bool, gone_after_runs: int, knowledge: NothingKnown
) -> Iterator[ById]:
    """What a run fetches by id after its listing, in order (see the module); the table's
    unlisted imports are asked for last, once the others are remembered as read."""
    for import_id, watched in previous.open_imports.items():
        gone = complete or watched.missing_runs + 1 >= gone_after_runs
        yield ById(import_id, "open at the last run", If404.GONE if gone else If404.MISSED, watched)
    if not complete:
        for import_id in previous.deleted:
            yield ById(import_id, "marked deleted lately", If404.STILL_DELETED)
    for chunk in knowledge.unlisted_live_ids():
        for import_id in chunk:
            yield ById(import_id, "live in the table, not listed", If404.GONE)


def fetch(
    client: ResendClient,
    imports: Iterable[ById],
    intake: Intake,
    observer: RunObserver,
    report: SyncReport,
    gone_after_runs: int,
    another_account: bool = False,
) -> List[str]:
    """Fetches `imports` by id into the intake. Returns the ids concluded gone."""
    gone: List[str] = []
    asked: Set[str] = set()
    for item in imports:
        import_id = item.import_id
        if import_id in asked or intake.has_read(import_id):
            continue
        asked.add(import_id)
        if not another_account:
            fetched = client.get_import(import_id)
            if fetched is not None:
                # counted whatever becomes of it: set aside when malformed, it stays watched
                report.refreshed_by_id += 1
                intake.take_fetched(fetched, datetime.now(UTC), import_id)
                continue
            report.not_found += 1
        if item.if_404 is If404.GONE:
            gone.append(import_id)
        elif item.if_404 is If404.MISSED and item.watched is not None:
            observer.not_found(import_id, item.watched)
            logger.warning(
                "import %s answered 404 (%d of %d runs before it is marked deleted)",
                import_id,
                item.watched.missing_runs + 1,
                gone_after_runs,
            )
    return gone
