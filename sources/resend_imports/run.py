"""One run of the `contact_imports` resource, step by step.

The resource in `__init__` is a few lines over `sync_contact_imports`; what becomes of the
rows it reads is the intake's job (`intake`), and what they are compared with is the table's
(`known`). Before it lists anything, a run checks what it is about to trust: the state
committed with the table (it wins over the local copy), that dlt's staging dataset is not a
dataset of somebody else's, that the table still holds the live imports the state counted,
and that the API key is the one that loaded it. When the table or the key say otherwise, the
run says so in one line and lists every import to repair the table in the same run.
"""

import logging
import secrets
from contextlib import ExitStack
from copy import deepcopy
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Dict, Iterator, List, Mapping, Optional

import dlt
from dlt.common.schema.utils import has_table_seen_data

from .alerts import ALERTS_TABLE, AlertRules, to_alerts_table
from .client import ResendClient
from .destination import DestinationReader, TableHealth, running_pipeline
from .errors import ResendConfigError
from .history import deletion_rows, to_history_table
from .incremental import RunObserver, SyncState
from .intake import Alerting, Intake, RowIntake, SyncReport, TableIntake
from .known import NothingKnown, StateKnowledge, TableCopy, TableLookups
from .quarantine import QUARANTINE_TABLE
from .settings import HISTORY_TABLE, MAX_PAGE_SIZE, STATUSES, TABLE_NAME

logger = logging.getLogger("resend_imports")

FIRST = "first"
FULL = "full"
SCHEDULED = "scheduled full"
INCREMENTAL = "incremental"
FILTERED = "filtered"
REPAIR = "repair"  # the table does not hold what the state describes
ANOTHER_KEY = "another key"  # the API key is not the one that loaded the table

WRITTEN_TABLES = (TABLE_NAME, HISTORY_TABLE, ALERTS_TABLE, QUARANTINE_TABLE)


@dataclass(frozen=True)
class RunOptions:
    """The settings of one run of the resource."""

    page_size: int
    status: Optional[str]
    full_refresh: bool
    gone_after_runs: int
    full_refresh_every_days: float


@dataclass
class Checked:
    """What the checks before the listing found."""

    empty_destination: bool = True  # no dataset or state: nothing to read
    readable: bool = False  # a SQL database: the table can be read and counted
    history_exists: bool = False  # the history table is there to be asked what it recorded
    health: Optional[TableHealth] = None  # None: the destination cannot be read with SQL
    repair: Optional[str] = None  # why the table does not hold what the state describes


def _start_from_committed_state(reader: DestinationReader, stored: Dict[str, Any]) -> bool:
    """Makes the run continue from the state committed with the table it loads into.

    The local copy differs after a restored backup, a run on another dataset or destination
    under the same pipeline name, or a wiped working folder; the destination's wins, and a
    destination that holds none makes this a first run. Returns whether the destination holds
    nothing at all (no dataset or state table: no table to read either).
    """
    known, committed, empty = reader.committed_state()
    if not known or committed == dict(stored):
        return empty
    if stored or committed:
        logger.warning(
            "the incremental state in %s differs from the local copy (a restored backup,"
            " another dataset or a wiped folder): continuing from the destination's%s",
            reader.dataset,
            "" if committed else " (none: this is a first run)",
        )
    stored.clear()
    stored.update(deepcopy(committed))
    return empty


def _check_destination(reader: DestinationReader, stored: Dict[str, Any]) -> Checked:
    """The state from the destination, then the staging dataset and the tables: those a
    person dropped are created again, and the live imports of `contact_imports` counted."""
    checked = Checked(_start_from_committed_state(reader, stored), reader.readable)
    taken = reader.staging_dataset_of_its_own()
    if taken is not None:
        raise ResendConfigError(
            f"dlt would merge {reader.dataset} through the staging dataset {taken}, which is a"
            " dataset of its own (it holds dlt loads): its tables would be replaced. Set"
            " another staging_dataset_name_layout (e.g. DESTINATION__STAGING_DATASET_NAME_LAYOUT"
            "='%s_dlt_staging') or use another dataset name; nothing was written"
        )
    if not reader.readable:
        return checked
    schema: Any = reader.schema  # the job client's: loading the pipeline's again costs time
    dlt_tables = [schema.state_table_name, schema.loads_table_name] if schema else []
    version_table = schema.version_table_name if schema else "_dlt_version"
    columns = reader.storage_columns([*WRITTEN_TABLES, *dlt_tables, version_table])
    missing: List[str] = []
    if columns.get(version_table) and schema is not None:
        # dlt creates a table only for a new schema version: one a person dropped from a
        # dataset it loaded before stays missing, and every later load fails on it
        missing = [
            name
            for name in [*WRITTEN_TABLES, *dlt_tables]
            if not columns.get(name)
            and name in schema.tables
            and (name in dlt_tables or has_table_seen_data(schema.tables[name]))
        ]
        if missing:
            logger.warning(
                "%s missing from %s (dropped or renamed by a person?): created again",
                ", ".join(missing) + (" is" if len(missing) == 1 else " are"),
                reader.dataset,
            )
            reader.recreate_tables(missing)
    checked.health = reader.table_health(columns.get(TABLE_NAME, []))
    checked.history_exists = bool(columns.get(HISTORY_TABLE)) or HISTORY_TABLE in missing
    return checked


def _repair_reason(previous: SyncState, checked: Checked, dataset: str) -> Optional[str]:
    """Why the table does not hold what the state describes, or None."""
    health = checked.health
    if previous.is_empty or health is None:
        return None
    table = f"{dataset}.{TABLE_NAME}"
    if health.live is None:
        return f"{table} was missing (dropped or renamed by a person?)"
    if previous.live_imports is not None and health.live < previous.live_imports:
        return (
            f"{table} holds {health.live:,} live imports where the last run left"
            f" {previous.live_imports:,} (rows deleted, or the table replaced, by a person?)"
        )
    return None


def _mode(
    previous: SyncState,
    options: RunOptions,
    now: datetime,
    key_changed: bool,
    repair: Optional[str],
) -> str:
    if options.status is not None:
        if key_changed:
            raise ResendConfigError(
                "the API key is not the one that loaded this table, and a filtered run cannot"
                " tell another account from a rotated key: run an unfiltered sync first (it"
                " lists every import and retires what this key's account does not have)"
            )
        return FILTERED
    if previous.is_empty:
        return FIRST
    if key_changed:
        return ANOTHER_KEY
    if repair is not None:
        return REPAIR
    if options.full_refresh:
        return FULL
    if previous.complete_listing_due(now, options.full_refresh_every_days):
        return SCHEDULED
    return INCREMENTAL


def _knowledge(
    reader: Optional[DestinationReader], checked: Checked, previous: SyncState, complete: bool
) -> NothingKnown:
    """Where this run reads what the table holds (see `known`)."""
    if reader is None or checked.health is None:
        return StateKnowledge(previous)  # outside a pipeline, or no SQL to read the table
    history = checked.history_exists
    if checked.health.live is None:
        return NothingKnown(reader if history else None)  # no table yet, or created again
    if complete:
        return TableCopy(reader, checked.health.columns, history)
    return TableLookups(reader, checked.health.columns, history)


def _refresh_unlisted(
    client: ResendClient,
    intake: Intake,
    previous: SyncState,
    options: RunOptions,
    complete: bool,
    another_account: bool,
) -> List[str]:
    """Fetches by id every import open at the last run that this listing did not return.

    Returns the ids concluded gone: those that answered 404 on `gone_after_runs`
    consecutive runs, or at once when a complete listing also omitted them (without a
    request under another account's key: the listing is that account's).
    """
    gone: List[str] = []
    for import_id, known in previous.open_imports.items():
        if import_id in intake.previously_open_seen:
            continue
        if another_account:
            gone.append(import_id)
            continue
        fetched = client.get_import(import_id)
        if fetched is not None:
            _accept_fetched(intake, fetched, import_id)
            continue
        intake.report.not_found += 1
        misses = known.missing_runs + 1
        if complete or misses >= options.gone_after_runs:
            gone.append(import_id)
            continue
        intake.observer.not_found(import_id, known)
        logger.warning(
            "import %s answered 404 (%d of %d runs before it is marked deleted)",
            import_id,
            misses,
            options.gone_after_runs,
        )
    return gone


def _recheck_deleted(client: ResendClient, intake: Intake, previous: SyncState) -> None:
    """Fetches by id the imports marked deleted lately that this run has not read: one that
    answers again was not deleted (its row and history say so); a 404 keeps it deleted."""
    for import_id in previous.deleted:
        if import_id in intake.observer.returned:
            continue
        fetched = client.get_import(import_id)
        if fetched is None:
            intake.report.not_found += 1
        else:
            _accept_fetched(intake, fetched, import_id)


def _reconcile_with_table(
    client: ResendClient, intake: Intake, another_account: bool, already: List[str]
) -> List[str]:
    """After a complete listing: live imports of the table that the listing did not return
    are fetched by id, and those that answer 404 are gone (all of them, without a request
    each, under another account's key)."""
    gone: List[str] = []
    skip = set(already)
    for chunk in intake.knowledge.unlisted_live_ids():
        for import_id in chunk:
            if import_id in skip:
                continue
            if another_account:
                gone.append(import_id)
                continue
            fetched = client.get_import(import_id)
            if fetched is None:
                intake.report.not_found += 1
                gone.append(import_id)
            else:
                _accept_fetched(intake, fetched, import_id)
    return gone


def _accept_fetched(intake: Intake, fetched: Dict[str, Any], import_id: str) -> None:
    """An import read by id (counted whatever becomes of it); set aside when malformed, it
    stays watched by the id it was asked for."""
    intake.report.refreshed_by_id += 1
    row = intake.take_fetched(fetched, datetime.now(UTC), import_id)
    if row is not None:
        intake.observer.fetched(row)


def _mark_deleted(
    reader: Optional[DestinationReader],
    gone: List[str],
    report: SyncReport,
    observer: RunObserver,
    recheck: bool = True,
) -> Iterator[Any]:
    """The last rows of imports concluded gone, with `deleted_at` set, and their history;
    re-checked by id on later runs unless they were another account's."""
    if not gone or reader is None or not reader.readable:
        if gone:
            logger.warning(
                "%d gone imports could not be marked deleted: the destination cannot be read",
                len(gone),
            )
        return
    deleted_at = datetime.now(UTC)
    logged = 0
    for rows in reader.last_rows(gone):
        for row in rows:
            row["deleted_at"] = deleted_at
            observer.deleted(row["id"], deleted_at, row.get("status"), recheck)
            if logged < 10:
                logger.warning("import %s is gone from Resend: marked deleted", row["id"])
            logged += 1
        report.deleted += len(rows)
        if rows:
            yield rows
            yield to_history_table(deletion_rows(rows, deleted_at))
    if logged > 10:
        logger.warning("%d more imports gone from Resend: marked deleted", logged - 10)


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


def _say_why(mode: str, repair: Optional[str], dataset: str) -> None:
    if mode == REPAIR:
        logger.warning("%s: listing every import to repair it", repair)
    elif mode == ANOTHER_KEY:
        logger.warning(
            "the API key is not the one that loaded %s.%s (another Resend account, or a"
            " rotated key): listing every import; if the listing shares none with the table,"
            " the table's imports are another account's and are marked deleted without a"
            " request each",
            dataset,
            TABLE_NAME,
        )


def sync_contact_imports(
    client: ResendClient, columns: Mapping[str, Any], options: RunOptions
) -> Iterator[Any]:
    """One run of `contact_imports`: checks the destination, lists (down to the frontier, or
    everything), refreshes by id what the listing did not show, marks what is gone, and
    saves the next state.

    Cost model: a first or complete listing makes ceil(N / page_size) list requests; an
    incremental one pages down to the frontier (the oldest open import near the top, else the
    newest import), so a quiet run makes 1; plus one GET per import watched by id (stuck deep
    in history, missing from the listing, or marked deleted in the last
    `RECHECK_DELETED_DAYS`) and, after a complete listing, one per id the table holds that the
    listing did not return. On the destination: a few catalog queries and a count before the
    listing, one query per page (incremental), or one streamed copy of the table's ids
    (complete listing).
    """
    if not client.has_api_key:
        raise ResendConfigError(
            "no Resend API key: set RESEND_API_KEY, SOURCES__RESEND__API_KEY"
            " or api_key under [sources.resend] in .dlt/secrets.toml"
            " (to try the connector without a key: resend-imports demo)"
        )
    pipeline = running_pipeline()
    with ExitStack() as cleanup:  # also when the run fails or is interrupted
        reader = None
        if pipeline is not None:
            reader = cleanup.enter_context(DestinationReader(pipeline))
        yield from _run(client, columns, options, pipeline, reader, cleanup)


def _run(
    client: ResendClient,
    columns: Mapping[str, Any],
    options: RunOptions,
    pipeline: Optional[dlt.Pipeline],
    reader: Optional[DestinationReader],
    cleanup: ExitStack,
) -> Iterator[Any]:
    report = SyncReport()
    rules = AlertRules.from_config()
    stored = dlt.current.resource_state()
    checked = Checked(empty_destination=True)
    if reader is not None and pipeline is not None:
        checked = _check_destination(reader, stored)
    previous = SyncState.load(stored)
    started_at = datetime.now(UTC)
    salt = previous.key_salt or secrets.token_hex(8)
    key_fingerprint = client.key_fingerprint(salt)
    key_changed = previous.key_fingerprint not in (None, key_fingerprint)
    dataset = pipeline.dataset_name if pipeline is not None else ""
    repair = _repair_reason(previous, checked, dataset)
    report.mode = _mode(previous, options, started_at, key_changed, repair)
    report.status = options.status
    _say_why(report.mode, repair, dataset)
    frontier = previous.frontier() if report.mode == INCREMENTAL else None
    complete = frontier is None and options.status is None
    knowledge = _knowledge(reader, checked, previous, complete)
    cleanup.callback(knowledge.close)
    observer = RunObserver(options.page_size)
    # the first run, the first with alerts on, another key's, or a repair (the table lost
    # what it held, not Resend): nothing older than `since_hours` is alerted
    first_alerts = (
        previous.is_empty or previous.alerts_since is None or report.mode in (ANOTHER_KEY, REPAIR)
    )
    alerting = Alerting(rules, started_at, first_alerts)
    intake_type = TableIntake if frontier is None else RowIntake
    intake: Intake = intake_type(previous, report, observer, columns, alerting, knowledge)

    expected = checked.health.live if complete and checked.health is not None else None
    pages = client.iter_pages(options.page_size, status=options.status, expected=expected)
    for page in pages:
        intake.take_page(page, datetime.now(UTC))
        yield from intake.emit()
        if frontier is not None and intake.oldest_listed and intake.oldest_listed < frontier:
            break  # an incremental run is down to the frontier
    intake.finish()  # the last pages, before the GETs below look at what was listed

    if options.status is not None:
        yield from intake.emit(flush=True)
        # the state is left alone but for the count of live imports: the rows this run
        # added are in the table, and a person deleting as many must still be noticed
        live = _live_imports(checked, report, observer)
        if not previous.is_empty and live is not None:
            stored["live_imports"] = live
    else:
        # another key whose listing shares no import with the table: another account (a
        # rotated key of the same account lists what the table holds)
        another_account = report.mode == ANOTHER_KEY and not intake.shares_imports()
        if report.mode == ANOTHER_KEY and not another_account:
            logger.info("the listing shares imports with the table: the same account")
        gone = _refresh_unlisted(client, intake, previous, options, complete, another_account)
        if not complete:
            _recheck_deleted(client, intake, previous)
        if knowledge.reconciles:
            gone += _reconcile_with_table(client, intake, another_account, gone)
        elif complete and reader is not None and not reader.readable:
            logger.warning(
                "%s cannot be read with SQL on this destination: deletions are not"
                " reconciled by complete listings",
                TABLE_NAME,
            )
        yield from intake.emit(flush=True)
        yield from _mark_deleted(reader, gone, report, observer, recheck=not another_account)
        raised, open_alerted = alerting.on_open(observer, previous.open_alerted)
        if raised:
            report.alerts_raised += len(raised)
            yield to_alerts_table(raised)
        alerts_since = (previous.alerts_since or started_at.isoformat()) if rules.enabled else None
        live = _live_imports(checked, report, observer)
        state = observer.next_state(
            previous,
            started_at,
            complete,
            open_alerted,
            alerts_since,
            live_imports=live,
            key=(salt, key_fingerprint),
        )
        state.save(stored)
        report.open_imports = len(state.open_imports)

    report.requests = client.stats.requests
    report.retries = client.stats.retries
    report.rate_limited = client.stats.rate_limited
    dlt.current.resource_metrics().update(vars(report))


def _live_imports(checked: Checked, report: SyncReport, observer: RunObserver) -> Optional[int]:
    """The live imports the table holds once this run's load is in: those it held when the
    run started (counted then: rows a filtered run added are in), plus what this run added
    and brought back, minus what it marked deleted."""
    if not checked.readable or checked.health is None:
        return None  # nothing to count with: no check on the next run either
    held = checked.health.live or 0
    return held + report.new + len(observer.returned) - report.deleted
