"""The intake of one run's imports: each parsed once (`records.to_row`), each id taken once,
compared with what the table holds (`known`), counted, observed for the next state, the
history and the alerts, and handed to dlt in batches; malformed records set aside.

A short incremental run and a complete listing go through the same steps; they differ in
what they compare with (`knowledge`: a query per batch, a scratch copy of the table compared
at the end, or the state alone) and in how many rows they hand over at once, which decides
the form dlt gets them in (`formats`). A comparison deferred to the end hands over only the
rows it found different from the table's: a complete listing of an unchanged table gives dlt
no import rows to merge.
"""

import logging
from collections import deque
from datetime import datetime
from typing import Any, Deque, Iterable, Iterator, List, Optional, Set

from .errors import MalformedImportError
from .formats import hand_over
from .known import Known, NothingKnown, compare
from .observer import RunObserver
from .quarantine import created_at_of
from .recorder import Recorder
from .records import COLUMNS, Row, fingerprint, to_row
from .settings import BATCH_ROWS, KNOWN_FIELDS, STATUSES
from .sync_report import SyncReport

logger = logging.getLogger("resend_imports")


class LoggedOnce:
    """A warning logged once per run for each new value (a field or status we do not know)."""

    def __init__(self, message: str) -> None:
        self.message = message
        self.logged: Set[Any] = set()

    def log(self, values: Iterable[Any]) -> None:
        for value in values:
            if value not in self.logged:
                self.logged.add(value)
                logger.warning(self.message, value)


class Intake:
    """Takes listed pages (`take_page`, then `finish`) and imports read by id (`take_fetched`);
    `emit` hands what it took to dlt."""

    def __init__(
        self,
        knowledge: NothingKnown,
        observer: RunObserver,
        recorder: Recorder,
        report: SyncReport,
        watched: Iterable[str] = (),
        watch_malformed: bool = False,
    ) -> None:
        self.knowledge = knowledge
        self.observer = observer
        self.recorder = recorder
        self.report = report
        # ids of the last two pages, against an API that repeats a row across a page
        # boundary; a set of every id would grow with the history
        self.recent: Deque[Set[str]] = deque([set(), set()], maxlen=2)
        self.watched = set(watched)  # ids the run fetches by id unless it reads them
        self.watched_read: Set[str] = set()
        # a malformed import this listing reads for the first time is watched by id
        self.watch_malformed = watch_malformed
        self.new_fields = LoggedOnce("Resend returned a new field %r; it loads as a new column")
        self.new_statuses = LoggedOnce(
            "unknown import status %r: loaded as is and refreshed until terminal"
        )
        self.oldest_listed: Optional[datetime] = None  # of the last page taken in
        self.pending: List[Row] = []  # taken, not yet compared
        self.pending_seen_at: List[datetime] = []
        self.batch: List[Row] = []  # compared, not yet handed to dlt
        self.matched = 0  # imports read that the table holds live: the same account

    def take_page(self, page: List[Any], seen_at: datetime) -> None:
        """A page of the listing (newest first)."""
        for raw in page:
            row = self._parse(raw, seen_at, None, self.watch_malformed)
            if row is None:  # set aside; its time, when it has one, still tells where we are
                self.oldest_listed = created_at_of(raw) or self.oldest_listed
                continue
            self.oldest_listed = row["created_at"]
            if self._first_sighting(row["id"], raw):
                self.pending.append(row)
                self.pending_seen_at.append(seen_at)
                self.observer.listed(row)
        self.recent.append(set())
        if len(self.pending) >= BATCH_ROWS:
            self.finish()

    def finish(self) -> None:
        """Compares what is left of the listing, before the run fetches what it missed."""
        if self.pending:
            self._compare(self.pending, self.pending_seen_at)
            self.pending, self.pending_seen_at = [], []

    def take_fetched(self, raw: Any, seen_at: datetime, requested_id: str) -> None:
        """An import read by `requested_id`; set aside when malformed (it stays watched by the
        id it was asked for), left out when this run took it already. An answer that carries
        another id (another import's, or the id in another case) is malformed: taken, it
        would load a row under the other id and leave the requested import as it was, no
        longer watched."""
        answered = raw.get("id") if isinstance(raw, dict) else None
        if isinstance(answered, str) and answered and answered != requested_id:
            reason = f"asked for by id, the API answered with the import {answered!r}"
            self._set_aside(raw, MalformedImportError(requested_id, reason), seen_at, requested_id)
            return
        row = self._parse(raw, seen_at, requested_id)
        if row is not None and self._first_sighting(row["id"], raw):
            self._compare([row], [seen_at])
            self.observer.fetched(row)

    def has_read(self, import_id: str) -> bool:
        """Whether this run read a watched import (listed, or set aside)."""
        return import_id in self.watched_read

    def shares_imports(self) -> bool:
        """Whether this run read an import the table holds live (the same account)."""
        if self.knowledge.deferred:
            return self.knowledge.shares_imports()
        return self.matched > 0

    def emit(self, flush: bool = False) -> Iterator[Any]:
        """Batches of the imports taken for `contact_imports`, then what the recorder holds
        (their history and alerts, records set aside). Batches of many pages keep dlt's
        per-item work small; `flush` sends what is left, and the rows a comparison deferred
        to the end found different from the table's (the others are not handed over).
        A deferred comparison hands no rows over before the end, but what the recorder holds
        (records set aside and their alerts) goes out as it comes: it must not pile up in
        Python over a listing of the whole history."""
        if flush:
            self.finish()
        if self.batch and (flush or len(self.batch) >= BATCH_ROWS):
            yield from hand_over(self.batch, COLUMNS)
            self.batch = []
            yield from self.recorder.items()
        elif self.knowledge.deferred and not flush:
            yield from self.recorder.items()
        if flush:
            rewritten = 0
            for changed in self.knowledge.changes(BATCH_ROWS):
                yield from hand_over(changed.rows, COLUMNS)
                observed = self._observe(
                    changed.rows, changed.fingerprints, changed.seen_at, changed.known
                )
                rewritten += sum(
                    differs and not seen
                    for differs, seen in zip(changed.differs, observed, strict=True)
                )
                yield from self.recorder.items()
            yield from self.recorder.items()
            self._report_rewritten(rewritten)

    def _parse(
        self, raw: Any, seen_at: datetime, requested_id: Optional[str], watch: bool = False
    ) -> Optional[Row]:
        """The row of a record, or None when it is malformed: then set aside, counted as read
        (not fetched again by id in this run), kept watched by id if it was open, and with
        `watch` watched by id from now on, so that it loads once Resend corrects it."""
        try:
            return to_row(raw)
        except MalformedImportError as error:
            self._set_aside(raw, error, seen_at, requested_id, watch)
            return None

    def _set_aside(
        self,
        raw: Any,
        error: MalformedImportError,
        seen_at: datetime,
        requested_id: Optional[str],
        watch: bool = False,
    ) -> None:
        quarantined = self.recorder.set_aside(raw, error, seen_at, requested_id)
        import_id = quarantined["import_id"]
        if import_id is not None:
            self.knowledge.note_read([import_id])
            self.observer.quarantined(import_id, watch, quarantined["created_at"] or seen_at)
            if import_id in self.watched:
                self.watched_read.add(import_id)

    def _first_sighting(self, import_id: str, raw: Any) -> bool:
        older, last = self.recent
        if import_id in last or import_id in older:
            return False
        last.add(import_id)
        if import_id in self.watched:
            self.watched_read.add(import_id)
        if not raw.keys() <= KNOWN_FIELDS:
            self.new_fields.log(sorted(raw.keys() - KNOWN_FIELDS))
        if (status := raw.get("status")) not in STATUSES:
            self.new_statuses.log([status])
        return True

    def _compare(self, rows: List[Row], seen_at: List[datetime]) -> None:
        """Rows taken in, compared with the table now, or remembered to be at the end."""
        printed = [fingerprint(row) for row in rows]
        self.report.rows += len(rows)
        if self.knowledge.deferred:  # handed to dlt at the end, those that differ only
            self.knowledge.remember(rows, printed, seen_at)
            return
        self.batch += rows
        ids = [row["id"] for row in rows]
        created_at = [row["created_at"] for row in rows]
        self._observe(rows, printed, seen_at, self.knowledge.lookup(ids, created_at, printed))

    def _report_rewritten(self, rewritten: int) -> None:
        """Rows a deferred comparison handed over with status and counts as the table held
        them: the table differed from Resend elsewhere (a person's edit, a column dropped, a
        row copied, a field Resend added), which the run says, counted and in
        one line, as it says what it observed."""
        self.report.rewritten += rewritten
        if rewritten:
            logger.info(
                "%s rows differed from Resend outside status and counts: loaded again",
                f"{rewritten:,}",
            )

    def _observe(
        self,
        rows: List[Row],
        printed: List[str],
        seen_at: List[datetime],
        known: List[Optional[Known]],
    ) -> List[bool]:
        """Rows compared with what the table held (`known`): counted, and recorded. Returns
        whether each was observed (new, changed, back)."""
        comparison = compare(printed, known)
        for row, previous in zip(rows, known, strict=True):
            if previous is not None and previous.deleted_at is not None:
                self.observer.back(row["id"])
        self.report.new += sum(previous is None for previous in known)
        self.matched += sum(p is not None and p.deleted_at is None for p in known)
        self.report.updated += sum(
            observed and previous is not None
            for observed, previous in zip(comparison.observed, known, strict=True)
        )
        self.recorder.observed(rows, printed, comparison, seen_at)
        return comparison.observed
