"""One run of the `contact_imports` resource, step by step.

The resource in `__init__` is a few lines over `sync_contact_imports`; what becomes of the
rows it reads is the intake's job (`intake`).
"""

import logging
from copy import deepcopy
from datetime import UTC, datetime
from typing import Any, Dict, Iterator, List, Mapping, Optional

import dlt

from . import destination
from .alerts import AlertRules, to_alerts_table
from .client import ResendClient
from .errors import ResendConfigError
from .history import deletion_rows, to_history_table
from .incremental import DeletedImport, RunObserver, SyncState
from .intake import Alerting, Intake, RowIntake, SyncReport, TableIntake
from .records import to_row
from .settings import MAX_PAGE_SIZE, STATUSES

logger = logging.getLogger("resend_imports")


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
    intake: Intake,
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
    client: ResendClient, intake: Intake, previous: SyncState, complete: bool
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
    intake: Intake,
    pipeline: dlt.Pipeline,
    previous: SyncState,
    already: List[str],
) -> List[str]:
    """After a complete listing: imports the table holds that the listing did not return are
    fetched by id; those that answer 404 are gone."""
    from . import arrow

    assert isinstance(intake, TableIntake)  # a complete listing
    listed = arrow.combined(intake.listed_ids())
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


def _accept_fetched(intake: Intake, fetched: Dict[str, Any]) -> None:
    row = to_row(fetched)
    if intake.take_fetched(fetched, row, datetime.now(UTC)):
        intake.report.refreshed_by_id += 1
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
        observer.deleted(row["id"], deleted_at, row.get("status"))
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
    in history, missing from the listing, or marked deleted in the last
    `RECHECK_DELETED_DAYS`) and, after a complete listing, one per id the table holds that the
    listing did not return.
    """
    if not client.has_api_key:
        raise ResendConfigError(
            "no Resend API key: set RESEND_API_KEY, SOURCES__RESEND__API_KEY"
            " or api_key under [sources.resend] in .dlt/secrets.toml"
            " (to try the connector without a key: resend-imports demo)"
        )
    report = SyncReport()
    rules = AlertRules.from_config()
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
    # the first run, or the first with alerts on, raises nothing older than `since_hours`
    first_alerts = previous.is_empty or previous.alerts_since is None
    before_deletion = {import_id: gone.status for import_id, gone in previous.deleted.items()}
    alerting = Alerting(rules, started_at, first_alerts, before_deletion)
    intake: Intake = (
        TableIntake(previous, report, observer, columns, alerting, collect_ids=in_table is not None)
        if frontier is None
        else RowIntake(previous, report, observer, columns, alerting)
    )

    expected = destination.row_count(pipeline) if in_table is not None and pipeline else None
    for page in client.iter_pages(page_size, status=status, expected=expected):
        intake.take_page(page, datetime.now(UTC))
        yield from intake.emit()
        if frontier is not None and intake.oldest_listed and intake.oldest_listed < frontier:
            break  # an incremental run is down to the frontier
    intake.finish()  # the last pages, before the GETs below look at what was listed

    if status is not None:
        yield from intake.emit(flush=True)
    else:
        gone = _refresh_unlisted(client, intake, previous, gone_after_runs, complete)
        _recheck_deleted(client, intake, previous, complete)
        if in_table is not None and pipeline is not None:
            gone += _reconcile_with_table(client, intake, pipeline, previous, gone)
        yield from intake.emit(flush=True)
        yield from _mark_deleted(pipeline, gone, report, observer)
        raised, open_alerted = alerting.on_open(observer, previous.open_alerted)
        if raised:
            report.alerts_raised += len(raised)
            yield to_alerts_table(raised)
        alerts_since = (previous.alerts_since or started_at.isoformat()) if rules.enabled else None
        state = observer.next_state(previous, started_at, complete, open_alerted, alerts_since)
        state.save(stored)
        report.open_imports = len(state.open_imports)

    report.requests = client.stats.requests
    report.retries = client.stats.retries
    report.rate_limited = client.stats.rate_limited
    dlt.current.resource_metrics().update(vars(report))
