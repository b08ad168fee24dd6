"""One run of the `contact_imports` resource, step by step, and the intake of its rows.

The resource in `__init__` is a few lines over `sync_contact_imports`. Every batch the run
lists becomes one Arrow table (`arrow`); `records.to_row` validates, row by row, only a
batch the columnar pass refuses, and names the import of a malformed value.
"""

import logging
from collections import deque
from copy import deepcopy
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Deque, Dict, Iterable, Iterator, List, Mapping, Optional, Set, Tuple

import dlt
import pyarrow.compute as pc

from . import arrow, destination
from .client import ResendClient
from .errors import ResendConfigError
from .history import Observations, deletion_rows, history_table, to_history_table
from .incremental import DeletedImport, RunObserver, SyncState
from .records import Row, to_row
from .settings import (
    BATCH_ROWS,
    DELETED_STATUS,
    KNOWN_FIELDS,
    MAX_PAGE_SIZE,
    STATUSES,
)

logger = logging.getLogger("resend_imports")


@dataclass
class SyncReport:
    """What one run of the resource did; filled in when the listing has been consumed."""

    mode: str = ""
    status: Optional[str] = None  # the filter of a filtered run
    rows: int = 0
    new: int = 0
    updated: int = 0
    refreshed_by_get: int = 0
    not_found: int = 0
    deleted: int = 0
    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    open_imports: int = 0


class _Intake:
    """Rows accepted by one run: each id once, counted, and observed for the history.

    Listed pages are kept until a batch is full (or, in an incremental run, one page at a
    time, whose oldest import says whether to go on) and then turned into one Arrow table;
    an import fetched by id becomes a table of one row. A row that carries a field this
    connector does not know is handed to dlt as a plain row, so that dlt's normalizer types
    that field the same way on every run (a variant column when its type changes), never
    Arrow batch by batch.
    """

    def __init__(
        self,
        previous: SyncState,
        report: SyncReport,
        observer: RunObserver,
        columns: Mapping[str, Any],
        collect_ids: bool = False,
    ) -> None:
        self.previous = previous
        self.columns = columns
        self.report = report
        self.observer = observer
        # ids of the last two batches, against an API that repeats a row across a page
        # boundary; a set of every id would grow with the history
        self.recent: Deque[Set[str]] = deque([set(), set()], maxlen=2)
        self.previously_open = set(previous.open_imports)
        self.previously_open_seen: Set[str] = set()
        self.new_fields = _LoggedOnce("Resend returned a new field %r; it loads as a new column")
        self.new_statuses = _LoggedOnce(
            "unknown import status %r: loaded as is and refreshed until terminal"
        )
        self.pages: List[Any] = []  # items of listed pages not yet turned into a table
        self.pages_seen_at: List[datetime] = []
        self.oldest_listed: Optional[datetime] = None  # of the last batch turned into a table
        self.collect_ids = collect_ids  # a complete listing that reconciles the table
        self.listed_ids: List[Any] = []  # then: Arrow arrays of every id accepted
        # (Arrow table, None or the same rows as dicts when they carry an unknown field)
        self.batch: List[Tuple[Any, Optional[List[Row]]]] = []
        self.batch_rows = 0
        self.observations = Observations()

    def take_page(self, page: List[Any], seen_at: datetime, at_once: bool = False) -> None:
        """Keeps a listed page until a batch is full, or turns it into a table `at_once`."""
        self.pages += page
        self.pages_seen_at += [seen_at] * len(page)
        if at_once or len(self.pages) >= BATCH_ROWS:
            self.take_pages_kept()

    def take_pages_kept(self) -> None:
        """Turns the pages kept so far into one table and accepts its rows."""
        if not self.pages:
            return
        table, rows = _listed_table(self.pages, self.new_fields, self.columns)
        if table.num_rows:
            self.oldest_listed = pc.min(table.column("created_at")).as_py()
        kept = self._accept_table(table, rows, self.pages_seen_at)
        self.observer.listed(*arrow.listing(kept), kept.num_rows)
        self.pages, self.pages_seen_at = [], []
        self.recent.append(set())

    def take_fetched(self, raw: Dict[str, Any], row: Row, seen_at: datetime) -> bool:
        """Takes an import read by id; False when this run already yielded it."""
        self.new_fields.log(raw.keys() - KNOWN_FIELDS)
        rows = [row] if row.keys() - self.columns.keys() else None  # a new field: dlt types it
        table = arrow.to_arrow([row], self.columns)
        return bool(self._accept_table(table, rows, [seen_at]).num_rows)

    def _first_sighting(self, import_id: str) -> bool:
        if any(import_id in ids for ids in self.recent):
            return False
        self.recent[-1].add(import_id)
        if import_id in self.previously_open:
            self.previously_open_seen.add(import_id)
        if import_id in self.previous.deleted:
            self.observer.back(import_id)
        return True

    def _accept_table(self, table: Any, rows: Optional[List[Row]], seen_at: List[datetime]) -> Any:
        first = [self._first_sighting(import_id) for import_id in table.column("id").to_pylist()]
        kept = arrow.keep(table, first)
        kept_rows = None if rows is None else [r for r, k in zip(rows, first, strict=True) if k]
        self.new_statuses.log(arrow.unknown_statuses(kept, STATUSES))
        observed, previous_status = arrow.classify(kept, self.previous)
        updated = sum(status is not None for status in previous_status)
        self.report.rows += kept.num_rows
        self.report.new += sum(observed) - updated
        self.report.updated += updated
        suffixes = [""] * kept.num_rows
        if DELETED_STATUS in previous_status:
            ids = kept.column("id").to_pylist()
            suffixes = [self.previous.history_key_suffix(import_id) for import_id in ids]
        self.observations.extend(
            observed,
            previous_status,
            [at for at, keep in zip(seen_at, first, strict=True) if keep],
            suffixes,
        )
        if self.collect_ids:
            self.listed_ids.append(kept.column("id"))
        self.batch.append((kept, kept_rows))
        self.batch_rows += kept.num_rows
        return kept

    def emit(self, flush: bool = False) -> Iterator[Any]:
        """Batches of accepted rows for `contact_imports`, then their history rows.

        Batches of several pages keep dlt's per-item work small; `flush` sends what is left.
        """
        if not self.batch_rows or not (flush or self.batch_rows >= BATCH_ROWS):
            return
        typed = [table for table, rows in self.batch if rows is None]
        if typed:
            yield arrow.with_dlt_columns(arrow.concat(typed))
        plain = [row for _, rows in self.batch if rows is not None for row in rows]
        if plain:
            yield plain
        imports = arrow.concat([table for table, _ in self.batch])
        history = history_table(imports, self.observations)
        if history is not None:
            yield to_history_table(arrow.with_dlt_columns(history))
        self.batch, self.batch_rows, self.observations = [], 0, Observations()


class _LoggedOnce:
    """A warning logged once per run for each new value (a field or status we do not know)."""

    def __init__(self, message: str) -> None:
        self.message = message
        self.logged: Set[Any] = set()

    def log(self, values: Iterable[Any]) -> None:
        for value in values:
            if value not in self.logged:
                self.logged.add(value)
                logger.warning(self.message, value)


def _listed_table(
    items: List[Any], new_fields: _LoggedOnce, columns: Mapping[str, Any]
) -> Tuple[Any, Optional[List[Row]]]:
    """Listed items as one Arrow table of the known columns, in one columnar pass or row by
    row if need be; and, when any item has a field this connector does not know, the rows
    themselves, for dlt's normalizer to type."""
    table = arrow.page_table(items, columns)
    if table is not None:
        return table, None
    rows = [to_row(raw) for raw in items]  # validates: names the import of a malformed value
    for raw in items:
        new_fields.log(sorted(raw.keys() - KNOWN_FIELDS))
    extra = any(row.keys() - columns.keys() for row in rows)
    return arrow.to_arrow(rows, columns), rows if extra else None


def _mode(
    previous: SyncState,
    status: Optional[str],
    full_refresh: bool,
    now: datetime,
    full_refresh_every_days: float,
) -> str:
    if status is not None:
        return "filtered"
    if previous.is_empty:
        return "first"
    if full_refresh:
        return "full"
    if previous.complete_listing_due(now, full_refresh_every_days):
        return "scheduled full"
    return "incremental"


def _start_from_committed_state(pipeline: dlt.Pipeline, stored: Dict[str, Any]) -> bool:
    """Makes the run continue from the state committed with the table it loads into.

    The local copy differs after a restored backup, a run on another dataset or destination
    under the same pipeline name, or a wiped working folder; the destination's wins, and a
    destination that holds none makes this a first run. Returns whether the destination holds
    nothing at all (no dataset or state table: no table to read either).
    """
    known, committed, empty = destination.committed_state(pipeline)
    if not known or committed == dict(stored):
        return empty
    if stored or committed:
        logger.warning(
            "the incremental state in %s differs from the local copy (a restored backup,"
            " another dataset or a wiped folder): continuing from the destination's%s",
            pipeline.dataset_name,
            "" if committed else " (none: this is a first run)",
        )
    stored.clear()
    stored.update(deepcopy(committed))
    return empty


def _refresh_unlisted(
    client: ResendClient,
    intake: _Intake,
    previous: SyncState,
    gone_after_runs: int,
    complete: bool,
) -> List[str]:
    """Fetches by id every import open at the last run that this listing did not return.

    Returns the ids concluded gone: those that answered 404 on `gone_after_runs`
    consecutive runs, or at once when a complete listing also omitted them.
    """
    gone: List[str] = []
    for import_id, known in previous.open_imports.items():
        if import_id in intake.previously_open_seen:
            continue
        fetched = client.get_import(import_id)
        if fetched is not None:
            _accept_fetched(intake, fetched)
            continue
        intake.report.not_found += 1
        misses = known.missing_runs + 1
        if complete or misses >= gone_after_runs:
            gone.append(import_id)
            continue
        intake.observer.not_found(import_id, known)
        logger.warning(
            "import %s answered 404 (%d of %d runs before it is marked deleted)",
            import_id,
            misses,
            gone_after_runs,
        )
    return gone


def _recheck_deleted(
    client: ResendClient, intake: _Intake, previous: SyncState, complete: bool
) -> None:
    """Fetches by id the imports marked deleted lately that this run has not read: one that
    answers again was not deleted (its row and history say so); a 404 keeps it deleted."""
    if complete:
        return  # the complete listing has shown every import that exists
    for import_id in previous.deleted:
        if import_id in intake.observer.returned:
            continue
        fetched = client.get_import(import_id)
        if fetched is None:
            intake.report.not_found += 1
        else:
            _accept_fetched(intake, fetched)


def _reconcile_with_table(
    client: ResendClient,
    intake: _Intake,
    pipeline: dlt.Pipeline,
    previous: SyncState,
    already: List[str],
) -> List[str]:
    """After a complete listing: imports the table holds that the listing did not return are
    fetched by id; those that answer 404 are gone."""
    listed = arrow.combined(intake.listed_ids)
    intake.listed_ids = []
    unlisted = destination.unlisted_live_ids(pipeline, listed)
    gone: List[str] = []
    for import_id in unlisted:
        if import_id in previous.open_imports or import_id in already:
            continue  # already fetched by `_refresh_unlisted`
        fetched = client.get_import(import_id)
        if fetched is None:
            intake.report.not_found += 1
            gone.append(import_id)
        else:
            _accept_fetched(intake, fetched)
    return gone


def _accept_fetched(intake: _Intake, fetched: Dict[str, Any]) -> None:
    row = to_row(fetched)
    if intake.take_fetched(fetched, row, datetime.now(UTC)):
        intake.report.refreshed_by_get += 1
        intake.observer.fetched(row)


def _mark_deleted(
    pipeline: Optional[dlt.Pipeline], gone: List[str], report: SyncReport, observer: RunObserver
) -> Iterator[Any]:
    """The last rows of imports concluded gone, with `deleted_at` set, and their history."""
    if not gone:
        return
    rows = destination.last_rows(pipeline, gone) if pipeline is not None else []
    deleted_at = datetime.now(UTC)
    for row in rows:
        row["deleted_at"] = deleted_at
        observer.deleted(row["id"], deleted_at)
        logger.warning("import %s is gone from Resend: marked deleted", row["id"])
    report.deleted += len(rows)
    if len(rows) < len(gone):
        logger.warning(
            "%d gone imports could not be marked deleted: the destination cannot be read",
            len(gone) - len(rows),
        )
    if rows:
        yield rows
        yield to_history_table(deletion_rows(rows, deleted_at))


def check_settings(
    page_size: int,
    status: Optional[str],
    max_attempts: int,
    connect_timeout: float,
    read_timeout: float,
) -> None:
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ResendConfigError(f"page_size must be 1 to {MAX_PAGE_SIZE}, got {page_size}")
    if status is not None and status not in STATUSES:
        raise ResendConfigError(f"status must be one of {', '.join(STATUSES)}; got {status!r}")
    if max_attempts < 1:
        raise ResendConfigError(f"max_attempts must be at least 1, got {max_attempts}")
    if connect_timeout <= 0 or read_timeout <= 0:
        raise ResendConfigError("connect_timeout_seconds and read_timeout_seconds must be > 0")


def check_deletion_settings(gone_after_runs: int, full_refresh_every_days: float) -> None:
    if gone_after_runs < 1:
        raise ResendConfigError(f"gone_after_runs must be at least 1, got {gone_after_runs}")
    if full_refresh_every_days < 0:
        raise ResendConfigError(
            f"full_refresh_every_days must be 0 (never) or more, got {full_refresh_every_days}"
        )


def clean_key(key: str) -> str:
    """The key without the newline a mounted secret file often ends in; one with spaces or
    control characters inside is refused (it is never sent, logged or echoed)."""
    key = key.strip()
    if any(not character.isprintable() or character.isspace() for character in key):
        raise ResendConfigError(
            "the Resend API key contains spaces or control characters: check RESEND_API_KEY,"
            " SOURCES__RESEND__API_KEY or api_key under [sources.resend]"
        )
    return key


def sync_contact_imports(
    client: ResendClient,
    columns: Mapping[str, Any],
    page_size: int,
    status: Optional[str],
    full_refresh: bool,
    gone_after_runs: int,
    full_refresh_every_days: float,
) -> Iterator[Any]:
    """One run of `contact_imports`: lists (down to the frontier, or everything), refreshes by
    id what the listing did not show, marks what is gone, and saves the next state.

    Cost model: a first or complete listing makes ceil(N / page_size) list requests; an
    incremental one pages down to the frontier (the oldest open import near the top, else the
    newest import), so a quiet run makes 1; plus one GET per import watched by id (stuck deep
    in history, missing from the listing, or marked deleted in the last 7 days) and, after a
    complete listing, one per id the table holds that the listing did not return.
    """
    if not client.has_api_key:
        raise ResendConfigError(
            "no Resend API key: set RESEND_API_KEY, SOURCES__RESEND__API_KEY"
            " or api_key under [sources.resend] in .dlt/secrets.toml"
            " (to try the connector without a key: resend-imports demo)"
        )
    report = SyncReport()
    stored = dlt.current.resource_state()
    pipeline = destination.running_pipeline()
    empty_destination = True
    if pipeline is not None:
        empty_destination = _start_from_committed_state(pipeline, stored)
    previous = SyncState.load(stored)
    started_at = datetime.now(UTC)
    report.mode = _mode(previous, status, full_refresh, started_at, full_refresh_every_days)
    report.status = status
    frontier = previous.frontier() if report.mode == "incremental" else None
    complete = frontier is None and status is None
    readable = complete and not empty_destination
    in_table = destination.deleted_ids(pipeline) if readable and pipeline else None
    if in_table:  # imports the table holds as deleted: a listing that shows them is a return
        previous.deleted = {
            **{k: DeletedImport(at) for k, at in in_table.items()},
            **previous.deleted,
        }
    observer = RunObserver(page_size)
    intake = _Intake(previous, report, observer, columns, collect_ids=in_table is not None)

    expected = destination.row_count(pipeline) if in_table is not None and pipeline else None
    for page in client.iter_pages(page_size, status=status, expected=expected):
        # an incremental run looks at each page: its oldest import says whether to go on
        intake.take_page(page, datetime.now(UTC), at_once=frontier is not None)
        yield from intake.emit()
        if frontier is not None and intake.oldest_listed and intake.oldest_listed < frontier:
            break
    intake.take_pages_kept()  # the last pages, before the GETs below look at what was listed

    if status is not None:
        yield from intake.emit(flush=True)
    else:
        gone = _refresh_unlisted(client, intake, previous, gone_after_runs, complete)
        _recheck_deleted(client, intake, previous, complete)
        if in_table is not None and pipeline is not None:
            gone += _reconcile_with_table(client, intake, pipeline, previous, gone)
        yield from intake.emit(flush=True)
        yield from _mark_deleted(pipeline, gone, report, observer)
        state = observer.next_state(previous, started_at, complete_listing=complete)
        state.save(stored)
        report.open_imports = len(state.open_imports)

    report.requests = client.stats.requests
    report.retries = client.stats.retries
    report.rate_limited = client.stats.rate_limited
    dlt.current.resource_metrics().update(vars(report))
