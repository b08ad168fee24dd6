"""The intake of one run's rows: each id once, compared with what the table holds, counted,
observed for the history and alerts, and handed to dlt in batches; malformed records set
aside.

Two intakes behind one interface (`take_page`, `take_fetched`, `finish`, `emit`):
- `RowIntake`, for a short incremental run: plain rows; it never imports pyarrow, which
  would cost such a run about a tenth of its time;
- `TableIntake`, for a run that reads to the end (first run, complete and filtered runs):
  pages collected into batches of `BATCH_ROWS`, each turned into one Arrow table at once.

Both compare what they read with the table through one rule (`known.compare`); parsing,
history rows and alerts exist in a row form and a columnar form, defined side by side and
proved equal by `tests/test_columnar.py`.

Whatever the intake, a row that carries a field this connector does not know is handed to dlt
as a plain row, so that dlt's normalizer types that field the same way on every run (a
variant column when its type changes), never Arrow batch by batch.
"""

import logging
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Deque, Dict, Iterable, Iterator, List, Mapping, Optional, Set, Tuple

from .alerts import (
    AlertRules,
    raised_on_malformed,
    raised_on_open,
    raised_on_rows,
    raised_on_table,
    to_alerts_table,
)
from .errors import MalformedImportError
from .history import Observations, history_rows, history_table, to_history_table
from .incremental import RunObserver, SyncState
from .known import Comparison, Known, NothingKnown, compare
from .quarantine import created_at_of, quarantine_row, to_quarantine_table
from .records import Row, fingerprint, to_row
from .settings import BATCH_ROWS, KNOWN_FIELDS, STATUSES

logger = logging.getLogger("resend_imports")

LOGGED_MALFORMED = 10  # records set aside named one by one in a run; the summary counts all


@dataclass
class SyncReport:
    """What one run of the resource did; filled in when the listing has been consumed."""

    mode: str = ""
    status: Optional[str] = None  # the filter of a filtered run
    rows: int = 0
    new: int = 0
    updated: int = 0
    refreshed_by_id: int = 0
    not_found: int = 0
    deleted: int = 0
    quarantined: int = 0  # malformed records set aside
    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    open_imports: int = 0
    alerts_raised: int = 0


@dataclass(frozen=True)
class Alerting:
    """The alert rules of this run, its clock, and whether it is the first with alerts on."""

    rules: AlertRules
    now: datetime
    first_alerting_run: bool

    def on_rows(
        self, seen: List[Row], history: List[Dict[str, Any]], before: List[Optional[str]]
    ) -> List[Dict[str, Any]]:
        return raised_on_rows(seen, history, before, *self._context())

    def on_table(self, seen: Any, history: Any, before: List[Optional[str]]) -> List[Any]:
        return raised_on_table(seen, history, before, *self._context())

    def _context(self) -> Tuple[AlertRules, datetime, bool]:
        return self.rules, self.now, self.first_alerting_run

    def on_malformed(self, quarantined: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        return raised_on_malformed(quarantined, *self._context())

    def on_open(self, observer: RunObserver, alerted: List[str]) -> Tuple[List[Any], Set[str]]:
        rows = observer.open_rows()
        return raised_on_open(rows, set(alerted), self.rules, self.now, self.first_alerting_run)


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
    """What both intakes share: the ids of the last pages, the comparison with the table,
    the counts, the observations and the records set aside."""

    def __init__(
        self,
        previous: SyncState,
        report: SyncReport,
        observer: RunObserver,
        columns: Mapping[str, Any],
        alerting: Alerting,
        knowledge: Optional[NothingKnown] = None,
    ) -> None:
        self.previous = previous
        self.report = report
        self.observer = observer
        self.columns = columns
        self.alerting = alerting
        self.knowledge = knowledge or NothingKnown()
        # ids of the last two pages (batches), against an API that repeats a row across a
        # page boundary; a set of every id would grow with the history
        self.recent: Deque[Set[str]] = deque([set(), set()], maxlen=2)
        self.previously_open = set(previous.open_imports)
        self.previously_open_seen: Set[str] = set()
        self.new_fields = LoggedOnce("Resend returned a new field %r; it loads as a new column")
        self.new_statuses = LoggedOnce(
            "unknown import status %r: loaded as is and refreshed until terminal"
        )
        self.oldest_listed: Optional[datetime] = None  # of the last page taken in
        self.batch_rows = 0
        self.observations = Observations()
        self.quarantined: List[Dict[str, Any]] = []  # set aside, not yet handed to dlt
        self.quarantine_keys: Set[str] = set()  # set aside by this run
        self.matched = 0  # imports read that the table holds live: the same account

    def take_page(self, page: List[Any], seen_at: datetime) -> None:
        raise NotImplementedError

    def take_fetched(self, raw: Any, seen_at: datetime, requested_id: str) -> Optional[Row]:
        """Takes an import read by `requested_id`; its row, or None when this run already
        took it or set it aside."""
        raise NotImplementedError

    def finish(self) -> None:
        """Takes in what is kept of the listing, before the run fetches what it missed."""

    def emit(self, flush: bool = False) -> Iterator[Any]:
        """Batches of accepted rows for `contact_imports`, then their history and alerts.

        Batches of several pages keep dlt's per-item work small; `flush` sends what is left.
        """
        raise NotImplementedError

    def _parse(
        self, raw: Any, seen_at: datetime, requested_id: Optional[str] = None, watch: bool = False
    ) -> Optional[Row]:
        """The row of a record, or None when it is malformed: then set aside (once a run),
        counted as read (not fetched again by id in this run), kept watched by id if it was
        open, and with `watch` (an incremental listing: a new import) watched by id from now
        on, so that it loads once Resend corrects it."""
        try:
            return to_row(raw)
        except MalformedImportError as error:
            row = quarantine_row(raw, error, seen_at, requested_id)
            import_id = row["import_id"]
            if import_id is not None:
                self.knowledge.note_read([import_id])
                self.observer.quarantined(import_id, watch, row["created_at"] or seen_at)
                if import_id in self.previously_open:
                    self.previously_open_seen.add(import_id)
            if row["quarantine_key"] not in self.quarantine_keys:
                self.quarantine_keys.add(row["quarantine_key"])
                self.report.quarantined += 1
                if self.report.quarantined <= LOGGED_MALFORMED:
                    logger.warning(
                        "set aside a malformed record (%s): %s",
                        error.reason,
                        row["quarantine_key"],
                    )
                self.quarantined.append(row)
            return None

    def _compare(
        self,
        ids: List[str],
        created_at: List[datetime],
        printed: List[str],
        seen_at: List[datetime],
    ) -> None:
        """Compares accepted rows with the table: counts and observations."""
        known: List[Optional[Known]] = self.knowledge.lookup(ids, created_at, printed)
        comparison = compare(printed, known)
        for import_id, previous in zip(ids, known, strict=True):
            if previous is not None and previous.deleted_at is not None:
                self.observer.back(import_id)
        self.report.rows += len(ids)
        self.report.new += sum(previous is None for previous in known)
        self.matched += sum(p is not None and p.deleted_at is None for p in known)
        self.report.updated += sum(
            observed and previous is not None
            for observed, previous in zip(comparison.observed, known, strict=True)
        )
        self.batch_rows += len(ids)
        self.observations.extend(comparison, seen_at)

    def shares_imports(self) -> bool:
        """Whether this run read an import the table holds live (the same account)."""
        if self.knowledge.deferred:
            return self.knowledge.shares_imports()
        return self.matched > 0

    def _first_sighting(self, import_id: str) -> bool:
        if any(import_id in ids for ids in self.recent):
            return False
        self.recent[-1].add(import_id)
        if import_id in self.previously_open:
            self.previously_open_seen.add(import_id)
        return True

    def _log_unusual(self, raw: Mapping[str, Any]) -> None:
        self.new_fields.log(sorted(raw.keys() - KNOWN_FIELDS))
        self.new_statuses.log([status] if (status := raw.get("status")) not in STATUSES else [])

    def _emit_quarantined(self) -> Iterator[Any]:
        if self.quarantined:
            yield to_quarantine_table(self.quarantined)
            yield from self._alerts(self.alerting.on_malformed(self.quarantined))
            self.quarantined = []

    def _news(self, raised: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        """The alerts on observations the history has not recorded before (an alert's key is
        its observation's key and its rule)."""
        if not raised:
            return raised
        recorded = self.knowledge.recorded(
            [alert["alert_key"].rsplit("|", 1)[0] for alert in raised]
        )
        return [alert for alert in raised if alert["alert_key"].rsplit("|", 1)[0] not in recorded]

    def _alerts(self, raised: List[Dict[str, Any]]) -> Iterator[Any]:
        if raised:
            self.report.alerts_raised += len(raised)
            yield to_alerts_table(raised)


class RowIntake(Intake):
    """A short incremental run: plain rows."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batch: List[Row] = []

    def take_page(self, page: List[Any], seen_at: datetime) -> None:
        accepted: List[Row] = []
        for raw in page:
            row = self._parse(raw, seen_at, watch=True)
            if row is None:  # set aside; its time, when it has one, still tells where we are
                self.oldest_listed = created_at_of(raw) or self.oldest_listed
                continue
            self.oldest_listed = row["created_at"]  # the listing is newest first
            if self._first_sighting(row["id"]):
                self._log_unusual(raw)
                accepted.append(row)
        self._accept(accepted, seen_at)
        for row in accepted:
            self.observer.listed(row)
        self.recent.append(set())

    def take_fetched(self, raw: Any, seen_at: datetime, requested_id: str) -> Optional[Row]:
        row = self._parse(raw, seen_at, requested_id)
        if row is None or not self._first_sighting(row["id"]):
            return None
        self._log_unusual(raw)
        self._accept([row], seen_at)
        return row

    def _accept(self, rows: List[Row], seen_at: datetime) -> None:
        if rows:
            ids = [row["id"] for row in rows]
            created = [row["created_at"] for row in rows]
            printed = [fingerprint(row) for row in rows]
            self._compare(ids, created, printed, [seen_at] * len(rows))
            self.batch += rows

    def emit(self, flush: bool = False) -> Iterator[Any]:
        yield from self._emit_quarantined()
        if not self.batch_rows or not (flush or self.batch_rows >= BATCH_ROWS):
            return
        yield self.batch
        history = history_rows(self.batch, self.observations)
        if history:
            yield to_history_table(history)
            chosen = self.observations.chosen()
            seen = [self.batch[i] for i in chosen]
            before = [self.observations.before[i] for i in chosen]
            yield from self._alerts(self._news(self.alerting.on_rows(seen, history, before)))
        self.batch, self.batch_rows, self.observations = [], 0, Observations()


class TableIntake(Intake):
    """A run that reads to the end: pages collected into batches, each one Arrow table."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pages: List[Any] = []  # items of listed pages not yet turned into a table
        self.pages_seen_at: List[datetime] = []
        # (Arrow table, None or the same rows as dicts when they carry an unknown field)
        self.tables: List[Tuple[Any, Optional[List[Row]]]] = []

    def take_page(self, page: List[Any], seen_at: datetime) -> None:
        self.pages += page
        self.pages_seen_at += [seen_at] * len(page)
        if len(self.pages) >= BATCH_ROWS:
            self.finish()

    def finish(self) -> None:
        if not self.pages:
            return
        table, rows, seen_at = self._listed_table(self.pages, self.pages_seen_at)
        kept = self._accept_table(table, rows, seen_at)
        self.observer.listed_table(kept)
        self.pages, self.pages_seen_at = [], []
        self.recent.append(set())

    def take_fetched(self, raw: Any, seen_at: datetime, requested_id: str) -> Optional[Row]:
        from . import arrow

        row = self._parse(raw, seen_at, requested_id)
        if row is None:
            return None
        self._log_unusual(raw)
        rows = [row] if row.keys() - self.columns.keys() else None  # a new field: dlt types it
        table = arrow.to_arrow([row], self.columns)
        return row if self._accept_table(table, rows, [seen_at]).num_rows else None

    def _accept_table(self, table: Any, rows: Optional[List[Row]], seen_at: List[datetime]) -> Any:
        from . import arrow

        first = [self._first_sighting(import_id) for import_id in table.column("id").to_pylist()]
        kept = arrow.keep(table, first)
        kept_rows = None if rows is None else [r for r, k in zip(rows, first, strict=True) if k]
        self.new_statuses.log(arrow.unknown_statuses(kept, STATUSES))
        kept_at = [at for at, keep in zip(seen_at, first, strict=True) if keep]
        printed = arrow.fingerprints(kept)
        if self.knowledge.deferred:  # compared with the table at the end (`_changes`)
            self.knowledge.remember(kept, printed, kept_at)
            self.report.rows += kept.num_rows
            self.batch_rows += kept.num_rows
            unobserved = [False] * kept.num_rows
            nothing: List[Optional[str]] = [None] * kept.num_rows
            self.observations.extend(
                Comparison(unobserved, nothing, nothing, [""] * kept.num_rows), kept_at
            )
        else:
            ids, created = kept.column("id").to_pylist(), kept.column("created_at").to_pylist()
            self._compare(ids, created, printed, kept_at)
        self.tables.append((kept, kept_rows))
        return kept

    def emit(self, flush: bool = False) -> Iterator[Any]:
        yield from self._emit_quarantined()
        if self.batch_rows and (flush or self.batch_rows >= BATCH_ROWS):
            yield from self._emit_batch()
        if flush:
            yield from self._changes()

    def _changes(self) -> Iterator[Any]:
        """What a deferred comparison found (a complete listing of an existing table): the
        history and alerts of every import new, changed or back, and the counts."""
        from . import arrow

        for batch in self.knowledge.changes(BATCH_ROWS):
            ids = batch.column("id").to_pylist()
            found: List[Optional[Known]] = [
                None if printed is None else Known(printed, deleted and deleted.isoformat())
                for printed, deleted in zip(
                    batch.column("known_fingerprint").to_pylist(),
                    batch.column("known_deleted_at").to_pylist(),
                    strict=True,
                )
            ]
            comparison = compare(batch.column("fingerprint").to_pylist(), found)
            self.report.new += sum(k is None for k in found)
            self.report.updated += sum(k is not None for k in found)
            for import_id, previous in zip(ids, found, strict=True):
                if previous is not None and previous.deleted_at is not None:
                    self.observer.back(import_id)
            observations = Observations()
            observations.extend(comparison, batch.column("seen_at").to_pylist())
            history = history_table(batch, observations)
            if history is not None:
                yield to_history_table(arrow.with_dlt_columns(history))
                raised = self.alerting.on_table(batch, history, comparison.before)
                yield from self._alerts(self._news(raised))

    def _emit_batch(self) -> Iterator[Any]:
        import pyarrow as pa

        from . import arrow

        typed = [table for table, rows in self.tables if rows is None]
        if typed:
            yield arrow.with_dlt_columns(arrow.concat(typed))
        plain = [row for _, rows in self.tables if rows is not None for row in rows]
        if plain:
            yield plain
        imports = arrow.concat([table for table, _ in self.tables])
        history = history_table(imports, self.observations)
        if history is not None:
            yield to_history_table(arrow.with_dlt_columns(history))
            seen = imports.filter(pa.array(self.observations.observed))
            before = [self.observations.before[i] for i in self.observations.chosen()]
            yield from self._alerts(self._news(self.alerting.on_table(seen, history, before)))
        self.tables, self.batch_rows, self.observations = [], 0, Observations()

    def _listed_table(
        self, items: List[Any], seen_at: List[datetime]
    ) -> Tuple[Any, Optional[List[Row]], List[datetime]]:
        """Listed items as one Arrow table of the known columns, in one columnar pass or row
        by row if need be (malformed records set aside); and, when any item has a field this
        connector does not know, the rows themselves, for dlt's normalizer to type."""
        from . import arrow

        table = arrow.page_table(items, self.columns)
        if table is not None:
            return table, None, seen_at
        rows: List[Row] = []
        kept_at: List[datetime] = []
        for raw, at in zip(items, seen_at, strict=True):
            row = self._parse(raw, at)
            if row is not None:
                self.new_fields.log(sorted(raw.keys() - KNOWN_FIELDS))
                rows.append(row)
                kept_at.append(at)
        extra = any(row.keys() - self.columns.keys() for row in rows)
        return arrow.to_arrow(rows, self.columns), rows if extra else None, kept_at
