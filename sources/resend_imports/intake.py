"""The intake of one run's rows: each id once, counted, observed for the history and alerts,
and handed to dlt in batches.

Two intakes behind one interface (`take_page`, `take_fetched`, `finish`, `emit`):
- `RowIntake`, for a short incremental run: plain rows one by one; it never imports pyarrow,
  which would cost such a run about a tenth of its time;
- `TableIntake`, for a run that reads to the end (first run, full listings, filtered runs):
  pages collected into batches of `BATCH_ROWS`, each turned into one Arrow table at once.

Each idea they apply exists in a row form and a columnar form, defined side by side and proved
equal by `tests/test_columnar.py`: parsing (`records.to_row` / `arrow.page_table`), what is
new or changed (`SyncState.observe` / `observe_table`), what a listing showed
(`RunObserver.listed` / `listed_table`), history rows (`history_rows` / `history_table`) and
alerts (`raised_on_rows` / `raised_on_table`).

Whatever the intake, a row that carries a field this connector does not know is handed to dlt
as a plain row, so that dlt's normalizer types that field the same way on every run (a
variant column when its type changes), never Arrow batch by batch.
"""

import logging
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Deque, Dict, Iterable, Iterator, List, Mapping, Optional, Set, Tuple

from .alerts import AlertRules, raised_on_open, raised_on_rows, raised_on_table, to_alerts_table
from .history import Observations, history_rows, history_table, to_history_table
from .incremental import RunObserver, SyncState
from .records import Row, to_row
from .settings import BATCH_ROWS, DELETED_STATUS, KNOWN_FIELDS, STATUSES

logger = logging.getLogger("resend_imports")


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
    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    open_imports: int = 0
    alerts_raised: int = 0


@dataclass(frozen=True)
class Alerting:
    """The alert rules of this run, its clock, whether it is the first with alerts on, and
    the status of each import marked deleted when it was (for one that comes back)."""

    rules: AlertRules
    now: datetime
    first_alerting_run: bool
    before_deletion: Mapping[str, Optional[str]]

    def on_rows(self, seen: List[Row], history: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        return raised_on_rows(seen, history, *self._context())

    def on_table(self, seen: Any, history: Any) -> List[Dict[str, Any]]:
        return raised_on_table(seen, history, *self._context())

    def _context(self) -> Tuple[AlertRules, datetime, bool, Mapping[str, Optional[str]]]:
        return self.rules, self.now, self.first_alerting_run, self.before_deletion

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
    """What both intakes share: the ids of the last pages, the counts, the observations."""

    def __init__(
        self,
        previous: SyncState,
        report: SyncReport,
        observer: RunObserver,
        columns: Mapping[str, Any],
        alerting: Alerting,
    ) -> None:
        self.previous = previous
        self.report = report
        self.observer = observer
        self.columns = columns
        self.alerting = alerting
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

    def take_page(self, page: List[Any], seen_at: datetime) -> None:
        raise NotImplementedError

    def take_fetched(self, raw: Dict[str, Any], row: Row, seen_at: datetime) -> bool:
        """Takes an import read by id; False when this run already yielded it."""
        raise NotImplementedError

    def finish(self) -> None:
        """Takes in what is kept of the listing, before the run fetches what it missed."""

    def emit(self, flush: bool = False) -> Iterator[Any]:
        """Batches of accepted rows for `contact_imports`, then their history and alerts.

        Batches of several pages keep dlt's per-item work small; `flush` sends what is left.
        """
        raise NotImplementedError

    def _alerts(self, raised: List[Dict[str, Any]]) -> Iterator[Any]:
        if raised:
            self.report.alerts_raised += len(raised)
            yield to_alerts_table(raised)

    def _first_sighting(self, import_id: str) -> bool:
        if any(import_id in ids for ids in self.recent):
            return False
        self.recent[-1].add(import_id)
        if import_id in self.previously_open:
            self.previously_open_seen.add(import_id)
        if import_id in self.previous.deleted:
            self.observer.back(import_id)
        return True

    def _count(self, observed: List[bool], previous_status: List[Optional[str]]) -> None:
        updated = sum(status is not None for status in previous_status)
        self.report.rows += len(observed)
        self.report.new += sum(observed) - updated
        self.report.updated += updated
        self.batch_rows += len(observed)


class RowIntake(Intake):
    """A short incremental run: plain rows, one by one."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batch: List[Row] = []

    def take_page(self, page: List[Any], seen_at: datetime) -> None:
        for raw in page:
            row = to_row(raw)
            self.oldest_listed = row["created_at"]  # the listing is newest first
            if self._accept(raw, row, seen_at):
                self.observer.listed(row)
        self.recent.append(set())

    def take_fetched(self, raw: Dict[str, Any], row: Row, seen_at: datetime) -> bool:
        return self._accept(raw, row, seen_at)

    def _accept(self, raw: Dict[str, Any], row: Row, seen_at: datetime) -> bool:
        if not self._first_sighting(row["id"]):
            return False
        self.new_fields.log(sorted(raw.keys() - KNOWN_FIELDS))
        self.new_statuses.log([status] if (status := raw.get("status")) not in STATUSES else [])
        observed, previous_status = self.previous.observe(row)
        self._count([observed], [previous_status])
        suffix = self.previous.history_key_suffix(row["id"])
        self.observations.add(observed, previous_status, seen_at, suffix)
        self.batch.append(row)
        return True

    def emit(self, flush: bool = False) -> Iterator[Any]:
        if not self.batch_rows or not (flush or self.batch_rows >= BATCH_ROWS):
            return
        yield self.batch
        history = history_rows(self.batch, self.observations)
        if history:
            yield to_history_table(history)
            observed = self.observations.observed
            seen = [row for row, o in zip(self.batch, observed, strict=True) if o]
            yield from self._alerts(self.alerting.on_rows(seen, history))
        self.batch, self.batch_rows, self.observations = [], 0, Observations()


class TableIntake(Intake):
    """A run that reads to the end: pages collected into batches, each one Arrow table."""

    def __init__(self, *args: Any, collect_ids: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pages: List[Any] = []  # items of listed pages not yet turned into a table
        self.pages_seen_at: List[datetime] = []
        self.collect_ids = collect_ids  # a complete listing that reconciles the table
        self.ids: List[Any] = []  # then: Arrow arrays of every id accepted
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
        table, rows = _listed_table(self.pages, self.new_fields, self.columns)
        kept = self._accept_table(table, rows, self.pages_seen_at)
        self.observer.listed_table(kept)
        self.pages, self.pages_seen_at = [], []
        self.recent.append(set())

    def take_fetched(self, raw: Dict[str, Any], row: Row, seen_at: datetime) -> bool:
        from . import arrow

        self.new_fields.log(sorted(raw.keys() - KNOWN_FIELDS))
        rows = [row] if row.keys() - self.columns.keys() else None  # a new field: dlt types it
        table = arrow.to_arrow([row], self.columns)
        return bool(self._accept_table(table, rows, [seen_at]).num_rows)

    def _accept_table(self, table: Any, rows: Optional[List[Row]], seen_at: List[datetime]) -> Any:
        from . import arrow

        first = [self._first_sighting(import_id) for import_id in table.column("id").to_pylist()]
        kept = arrow.keep(table, first)
        kept_rows = None if rows is None else [r for r, k in zip(rows, first, strict=True) if k]
        self.new_statuses.log(arrow.unknown_statuses(kept, STATUSES))
        observed, previous_status = self.previous.observe_table(kept)
        self._count(observed, previous_status)
        suffixes = [""] * kept.num_rows
        if DELETED_STATUS in previous_status:  # imports back: only then a suffix to look up
            ids = kept.column("id").to_pylist()
            suffixes = [self.previous.history_key_suffix(import_id) for import_id in ids]
        self.observations.extend(
            observed,
            previous_status,
            [at for at, keep in zip(seen_at, first, strict=True) if keep],
            suffixes,
        )
        if self.collect_ids:
            self.ids.append(kept.column("id"))
        self.tables.append((kept, kept_rows))
        return kept

    def emit(self, flush: bool = False) -> Iterator[Any]:
        if not self.batch_rows or not (flush or self.batch_rows >= BATCH_ROWS):
            return
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
            yield from self._alerts(self.alerting.on_table(seen, history))
        self.tables, self.batch_rows, self.observations = [], 0, Observations()

    def listed_ids(self) -> List[Any]:
        """The ids of every import accepted (with `collect_ids`), as Arrow arrays; once."""
        ids, self.ids = self.ids, []
        return ids


def _listed_table(
    items: List[Any], new_fields: LoggedOnce, columns: Mapping[str, Any]
) -> Tuple[Any, Optional[List[Row]]]:
    """Listed items as one Arrow table of the known columns, in one columnar pass or row by
    row if need be; and, when any item has a field this connector does not know, the rows
    themselves, for dlt's normalizer to type."""
    from . import arrow

    table = arrow.page_table(items, columns)
    if table is not None:
        return table, None
    rows = [to_row(raw) for raw in items]  # validates: names the import of a malformed value
    for raw in items:
        new_fields.log(sorted(raw.keys() - KNOWN_FIELDS))
    extra = any(row.keys() - columns.keys() for row in rows)
    return arrow.to_arrow(rows, columns), rows if extra else None
