"""Pipeline entry point: one sync of Resend contact imports into a dlt destination."""

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import dlt
import duckdb
from dlt.common.destination import Destination
from dlt.common.destination.exceptions import SqlClientNotAvailable
from dlt.load.exceptions import LoadClientJobFailed, LoadPackageAborted
from dlt.pipeline.exceptions import PipelineStepFailed

from sources.resend_imports import SyncReport, resend_source
from sources.resend_imports.destination import committed_state, resource_state_of
from sources.resend_imports.errors import ResendConfigError, ResendError
from sources.resend_imports.incremental import SyncState
from sources.resend_imports.quarantine import QUARANTINE_TABLE
from sources.resend_imports.settings import TABLE_NAME

from .alert_delivery import (
    AlertDeliveryError,
    Channel,
    DeliveryReport,
    configured_channels,
    deliver_pending,
    new_alerts,
)
from .destination_faults import (
    DestinationFaultError,
    describe_destination,
    destination_credentials,
    destination_fault,
)
from .failures import causes, explain
from .locking import writer_lock
from .packages import repair_package_storage
from .views import ViewsNotRebuiltError, create_views

logger = logging.getLogger("resend_imports")

DUCKDB_CONFIG_ENV = "DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG"
DEFAULT_DUCKDB_CONFIG = '{"memory_limit": "64MB", "threads": 1, "preserve_insertion_order": false}'
# Arrow's default allocator keeps freed memory for reuse; the system one gives it back
ARROW_POOL_ENV = "ARROW_DEFAULT_MEMORY_POOL"
# A package the destination refuses for its data is aborted (local state rewound to the
# committed one) instead of being retried, and failing, on every later run
AUTO_ABORT_ENV = "LOAD__AUTO_ABORT_ON_TERMINAL_ERROR"
# DuckDB's memory limit holds for the whole database, not per job: two merges at once (the
# table's and the history's, a million rows each) exhaust 64 MB where one after the other fit
LOAD_WORKERS_ENV = "LOAD__WORKERS"

MODE_TEXT = {
    "first": "first run: no state in the destination, every import listed",
    "full": "full refresh",
    "scheduled full": "scheduled full listing",
    "incremental": "incremental run",
    "filtered": "filtered run",
    "repair": "repair: the table did not hold what the state describes, every import listed",
    "another key": "another API key: every import listed and compared with the table",
}

STAGING_LAYOUT_ENV = "DESTINATION__STAGING_DATASET_NAME_LAYOUT"
STAGING_LAYOUT = "%s_dlt_staging"

PIPELINE_NAME = "resend_imports"
DATASET_NAME = "resend"
DEFAULT_DESTINATION = "duckdb"


@dataclass
class SyncSummary(SyncReport):
    """What one sync did (the source's report), and where it went, for people and tests."""

    elapsed_seconds: float = 0.0
    destination: str = ""
    table: str = ""
    delivery: Optional[DeliveryReport] = None  # None: alerts not delivered by this run

    def lines(self) -> list[str]:
        """The summary: where the data went and what changed, then what it cost."""
        where = f"{self.table} on {self.destination}"
        mode = MODE_TEXT.get(self.mode, self.mode)
        unchanged = self.rows - self.new - self.updated
        deletions = ""
        if self.deleted or self.not_found:
            deletions = f"; marked deleted {self.deleted}, answered 404 {self.not_found}"
        if self.mode == "filtered":
            first = f"listed {self.rows} contact imports with status {self.status} into {where}"
            second = f"  new {self.new}, updated {self.updated}, unchanged {unchanged}"
            mode = "filtered run: the incremental state is left alone"
        elif self.new == self.updated == self.deleted == 0:
            first = f"nothing changed in {where}: {self.rows} contact imports read, all as before"
            second = f"  still open {self.open_imports}{deletions}"
        else:
            first = f"synced {self.rows} contact imports into {where}"
            second = (
                f"  new {self.new}, updated {self.updated}, unchanged {unchanged};"
                f" still open {self.open_imports}{deletions}"
            )
        lines = [f"{first} ({mode})", second]
        if self.quarantined:
            lines.append(
                f"  set aside {self.quarantined} malformed record"
                f"{'s' if self.quarantined > 1 else ''} in"
                f" {self.table.split('.')[0]}.{QUARANTINE_TABLE} (the WARNING lines say why)"
            )
        delivery = self.delivery
        if self.alerts_raised or (delivery and (any(delivery.sent.values()) or delivery.waiting)):
            text = f"  alerts: raised {self.alerts_raised}"
            lines.append(text + (f"; {delivery.line()}" if delivery else ""))
        lines.append(
            f"  requests {self.requests} (by id {self.refreshed_by_id + self.not_found}),"
            f" retries {self.retries}, rate-limited {self.rate_limited};"
            f" {self.elapsed_seconds:.2f}s"
        )
        return lines


class StaleViewsAfterLoadError(ResendError):
    """The run loaded, but its views were not brought up to date: a failure of the run that
    must never read as lost data. `summary` is what the load did, for the caller to show."""

    def __init__(self, summary: SyncSummary, problem: ViewsNotRebuiltError) -> None:
        self.summary = summary
        self.problem = problem
        super().__init__(
            f"the load is done ({summary.rows} contact imports read into {summary.table}),"
            f" but {problem}"
        )


def make_pipeline(
    destination: Any = DEFAULT_DESTINATION,
    dataset_name: str = DATASET_NAME,
    *,
    pipeline_name: str = PIPELINE_NAME,
    pipelines_dir: Optional[str] = None,
) -> dlt.Pipeline:
    """The dlt pipeline of this connector; DuckDB lands in `<pipeline_name>.duckdb` by default.

    DuckDB gets a memory limit (64 MB, spilling to disk beyond) and one thread, unless
    DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG says otherwise: its merge of a large
    first load would otherwise take hundreds of MB (one thread is what lets the merge of a
    million imports fit in 64 MB; it costs a few percent of a sync's time). Arrow uses the
    system allocator (unless ARROW_DEFAULT_MEMORY_POOL says otherwise), so that memory freed
    after a batch is returned. dlt merges through a staging dataset named `<dataset>_staging`
    by default, which is a name people give their own datasets (`resend` and
    `resend_staging`): unless a `staging_dataset_name_layout` is configured, it is
    `<dataset>_dlt_staging` here (the source refuses to merge through a staging dataset
    that is a dataset of its own, whatever the layout). On DuckDB the load jobs run one at
    a time unless LOAD__WORKERS says otherwise (the memory limit is shared by all jobs).
    """
    os.environ.setdefault(DUCKDB_CONFIG_ENV, DEFAULT_DUCKDB_CONFIG)
    os.environ.setdefault(ARROW_POOL_ENV, "system")
    os.environ.setdefault(AUTO_ABORT_ENV, "true")
    options: Dict[str, Any] = {}
    if pipelines_dir is not None:
        options["pipelines_dir"] = pipelines_dir
    pipeline: dlt.Pipeline = dlt.pipeline(
        pipeline_name=pipeline_name,
        destination=destination,
        dataset_name=dataset_name,
        **options,
    )
    # read when the destination's configuration resolves, at the run: set before it
    if not _staging_layout_configured(destination):
        os.environ.setdefault(STAGING_LAYOUT_ENV, STAGING_LAYOUT)
    if getattr(pipeline.destination, "destination_name", None) == "duckdb":
        os.environ.setdefault(LOAD_WORKERS_ENV, "1")
    return pipeline


def _staging_layout_configured(destination: Any) -> bool:
    name = getattr(destination, "destination_name", None) or str(destination)
    return any(
        dlt.config.get(f"{section}.staging_dataset_name_layout") is not None
        for section in ("destination", f"destination.{name}")
    )


def duckdb_destination(path: str) -> Any:
    """dlt's DuckDB destination on the file at `path` (`--duckdb`)."""
    return dlt.destinations.duckdb(str(Path(path).expanduser().resolve()))


def duckdb_file(pipeline: dlt.Pipeline, credentials: Any = None) -> Optional[Path]:
    """The DuckDB file a pipeline writes, or None for another destination (or in memory)."""
    destination = pipeline.destination
    if not isinstance(destination, Destination) or destination.destination_name != "duckdb":
        return None
    credentials = credentials or pipeline.destination_client().config.credentials
    database = str(getattr(credentials, "database", ""))
    if not database or database.startswith(":"):
        return None
    return Path(database).resolve()


def check_duckdb_folder(path: Path) -> None:
    """Fails in one line when DuckDB could not create or write `path` (and its .wal)."""
    if not path.parent.is_dir():
        raise ResendConfigError(
            f"the folder of the DuckDB file {path} does not exist: create it, or give another"
            " path with --duckdb or DESTINATION__DUCKDB__CREDENTIALS"
        )
    if not os.access(path.parent, os.W_OK | os.X_OK) or (
        path.exists() and not os.access(path, os.W_OK)
    ):
        raise ResendConfigError(
            f"cannot write the DuckDB file {path} (DuckDB writes it and a .wal beside it):"
            " make the folder writable, or give another path with --duckdb or"
            " DESTINATION__DUCKDB__CREDENTIALS"
        )


# DuckDB's own catalogs beside the file's; a file named like one of these gets "_db" appended
DUCKDB_BUILTIN_CATALOGS = ("system", "temp")
DUCKDB_RENAMED_CATALOGS = ("system", "temp", "main")
# A DuckDB file starts with an 8-byte checksum, then these magic bytes
DUCKDB_MAGIC = b"DUCK"
DUCKDB_MAGIC_OFFSET = 8


def check_duckdb_database(path: Path) -> None:
    """Fails in one line when `path` exists but is no DuckDB database (an empty or text file,
    a folder), which DuckDB refuses with an error of its own only once it has opened it.

    The header is read here instead, so that nothing but a read touches the path: it is left
    exactly as it was (same bytes, same mtime). A path that does not exist passes: `sync`
    creates the file (`report` refuses it on its own).
    """
    if not path.exists():
        return
    header = b""
    if path.is_file():  # never open a folder, a FIFO (which would block) or a device
        try:
            with open(path, "rb") as file:
                header = file.read(DUCKDB_MAGIC_OFFSET + len(DUCKDB_MAGIC))
        except OSError as exc:
            raise ResendConfigError(
                f"cannot read the DuckDB file {path} ({exc.strerror}): make it readable, or"
                " give another path with --duckdb or DESTINATION__DUCKDB__CREDENTIALS"
            ) from None
    if header[DUCKDB_MAGIC_OFFSET:] != DUCKDB_MAGIC:
        raise ResendConfigError(
            f"{path} is not a DuckDB database ({_kind_of(path, header)}); it was left as it"
            " is: give the path of a DuckDB file, or of one to create, with --duckdb or"
            " DESTINATION__DUCKDB__CREDENTIALS"
        )


def _kind_of(path: Path, header: bytes) -> str:
    if path.is_dir():
        return "a folder"
    if not path.is_file():
        return "not a regular file"
    return "an empty file" if not header else "a file without DuckDB's header"


def check_duckdb_names(pipeline: dlt.Pipeline) -> None:
    """Fails in one line when a dataset of the pipeline is named like a catalog of the DuckDB
    connection, which makes every query of `dataset.table` ambiguous.

    DuckDB names the file's catalog after the file (the resolved path: a symlink's target) and
    compares names case-insensitively; dlt writes the dataset under its normalized name and
    merges through a staging dataset named by the destination's `staging_dataset_name_layout`.
    Both names come from the resolved destination config, as dlt computes them. The name the
    path was given under counts too: a DuckDB version that does not resolve symlinks names
    the catalog after it.
    """
    client = pipeline.destination_client()
    config: Any = client.config
    catalogs = _duckdb_catalogs(str(config.credentials.database))
    datasets = {
        "dataset": config.normalize_dataset_name(client.schema),
        "staging dataset": config.normalize_staging_dataset_name(client.schema),
    }
    for kind, dataset in datasets.items():
        clash, advice = catalogs.get(dataset.lower(), ("", ""))
        if not clash:
            continue
        given = (
            "" if dataset == pipeline.dataset_name else f" (from --dataset {pipeline.dataset_name})"
        )
        raise ResendConfigError(
            f"{clash} is named like the {kind} {dataset!r}{given}, which DuckDB cannot tell"
            f" apart in queries (it compares names case-insensitively); {advice}"
        )


def _duckdb_catalogs(database: str) -> Dict[str, Tuple[str, str]]:
    """The catalogs of a connection to `database` (lower case), each with what it is and the
    way out of a clash with it."""
    files = {Path(database).resolve(), Path(database).absolute()}
    rename = "rename the file or pass another --dataset"
    catalogs = {
        _duckdb_catalog_name(file).lower(): (f"the DuckDB file {file}", rename) for file in files
    }
    for name in DUCKDB_BUILTIN_CATALOGS:
        catalogs[name] = (f"DuckDB's built-in catalog {name}", "pass another --dataset")
    return catalogs


def _duckdb_catalog_name(file: Path) -> str:
    """The catalog DuckDB gives the file: its name up to the first dot (leading dots
    skipped), with "_db" appended to a name DuckDB keeps for itself."""
    name = next((part for part in file.name.split(".") if part), file.name)
    return f"{name}_db" if name.lower() in DUCKDB_RENAMED_CATALOGS else name


def _check_duckdb_file(pipeline: dlt.Pipeline, credentials: Any) -> None:
    """Fails before any request when the DuckDB file cannot take this load.

    A path that is no DuckDB database, a file named like a dataset of the run (ambiguous
    queries), a folder that does not exist or cannot be written, or a file locked by another
    process, would fail the load after the API has been paged for nothing.
    """
    path = duckdb_file(pipeline, credentials)
    if path is None:
        return
    check_duckdb_folder(path)
    check_duckdb_database(path)
    check_duckdb_names(pipeline)
    duckdb.connect(str(path)).close()  # raises at once when another process holds the lock


def finish_or_discard_pending(pipeline: dlt.Pipeline) -> None:
    """Loads the packages an interrupted run left, when they continue the state committed in
    the destination; otherwise discards them.

    dlt's run() would load pending packages and skip the new extract: they are finished
    first, so that this run still ends with the imports as they are now. A package extracted
    against another copy of the table (a restored backup, another dataset or destination
    under this pipeline name) would commit a state that does not describe this table: it is
    discarded, and this run lists again from the destination's state.
    """
    known, committed, _ = committed_state(pipeline)
    local = SyncState.load(resource_state_of(pipeline.state))
    if not known or local.continues(SyncState.load(committed)):
        logger.warning("loading data left by an interrupted run before syncing")
        try:
            pipeline.run()
        except PipelineStepFailed as exc:
            refused = next(
                (
                    c
                    for c in causes(exc)
                    if isinstance(c, (LoadPackageAborted, LoadClientJobFailed))
                ),
                None,
            )
            if refused is None:
                raise
            # e.g. a kill between a job's commit and dlt's record of it: the job cannot run
            # twice (`_dlt_pipeline_state` keeps `_dlt_id` unique). dlt aborted the package
            # and rewound the local state; this run lists again from the committed one
            logger.warning(
                "the data left by an interrupted run could not be finished and was discarded"
                " (%s); this run lists again from the state the destination holds",
                explain(exc) or type(refused).__name__,
            )
        return
    packages = len(pipeline.list_extracted_load_packages()) + len(
        pipeline.list_normalized_load_packages()
    )
    logger.warning(
        "discarding %d load package(s) left by an interrupted run: they were extracted"
        " against another copy of %s (a restored backup, another dataset or destination);"
        " this run lists again from the state the destination holds",
        packages,
        pipeline.dataset_name,
    )
    pipeline.abort_packages()


def report_of(pipeline: dlt.Pipeline) -> SyncReport:
    """What the last run of the resource did, from dlt's resource metrics in the trace."""
    trace = pipeline.last_trace
    extract = trace.last_extract_info if trace is not None else None
    for steps in reversed(list(extract.metrics.values()) if extract is not None else []):
        for step in reversed(steps):
            resource = step["resource_metrics"].get(TABLE_NAME)
            if resource is not None and resource.custom_metrics:
                return SyncReport(**resource.custom_metrics)
    return SyncReport()


def run_sync(
    pipeline: dlt.Pipeline,
    *,
    full_refresh: bool = False,
    status: Optional[str] = None,
    wait_seconds: float = 0.0,
    loader_file_format: Optional[str] = None,
    deliver_alerts: bool = True,
    refresh_views: bool = True,
    **source_options: Any,
) -> SyncSummary:
    """Runs one sync, holding the pipeline's writer lock throughout, and returns its summary.

    Args:
        pipeline: From `make_pipeline`.
        full_refresh: List every import again (merged: no duplicates).
        status: Only imports with this status; the incremental state is left alone.
        wait_seconds: How long to wait for another run that holds the lock.
        loader_file_format: A dlt file format for every load package (default: dlt's
            choice per item: parquet or csv for Arrow batches, INSERTs for plain rows).
        deliver_alerts: Send the alerts not yet delivered after the load (the DAG does it
            in a task of its own: `deliver_alerts`).
        refresh_views: Bring the views up to date after the load (the DAG does it in a
            task of its own: `refresh_views`).
        **source_options: Arguments of `resend_source` given explicitly (api_key, base_url,
            page_size, retry settings); anything not given comes from dlt config.

    Raises:
        SyncLockedError: another run held the lock for longer than `wait_seconds`.
        StaleViewsAfterLoadError: the load is done, but the views were not brought up to date.
    """
    started = time.monotonic()
    credentials = destination_credentials(pipeline)
    where = describe_destination(pipeline, credentials)
    try:
        with writer_lock(pipeline, wait_seconds):
            return _run_locked(
                pipeline,
                started,
                where,
                credentials,
                full_refresh,
                status,
                loader_file_format,
                deliver_alerts,
                refresh_views,
                source_options,
            )
    except ResendError:
        raise
    except Exception as exc:
        fault = destination_fault(exc, where)
        if fault is None:
            raise
        raise DestinationFaultError(fault) from exc


def _run_locked(
    pipeline: dlt.Pipeline,
    started: float,
    where: str,
    credentials: Any,
    full_refresh: bool,
    status: Optional[str],
    loader_file_format: Optional[str],
    deliver_alerts: bool,
    refresh_views: bool,
    source_options: Dict[str, Any],
) -> SyncSummary:
    channels = configured_channels(pipeline) if deliver_alerts else []  # a bad URL fails here
    if status is not None:  # else dlt config may set it: an explicit None would win over it
        source_options["status"] = status
    source = resend_source(full_refresh=full_refresh, **source_options)
    destination = pipeline.destination
    name = destination.destination_name if isinstance(destination, Destination) else ""
    _check_duckdb_file(pipeline, credentials)
    repair_package_storage(pipeline)
    if pipeline.has_pending_data:
        finish_or_discard_pending(pipeline)
    load_info = pipeline.run(source, loader_file_format=loader_file_format)  # type: ignore[arg-type]
    views_problem = _views_after_load(pipeline, name) if refresh_views else None
    report = report_of(pipeline)
    if report.alerts_raised:  # those the table did not hold already (it is insert-only)
        report.alerts_raised = new_alerts(pipeline, load_info.loads_ids, report.alerts_raised)
    delivery = _deliver_after_load(pipeline, channels, where) if deliver_alerts else None
    summary = SyncSummary(
        **vars(report),
        elapsed_seconds=time.monotonic() - started,
        destination=where,
        table=f"{pipeline.dataset_name}.{TABLE_NAME}",
        delivery=delivery,
    )
    if views_problem is not None:
        raise StaleViewsAfterLoadError(summary, views_problem)
    return summary


def _views_after_load(pipeline: dlt.Pipeline, name: str) -> Optional[ViewsNotRebuiltError]:
    """Brings the views up to date after a committed load (cheap when they are current).

    A failure is returned, not raised: the load is done, and the run still reports it and
    delivers its alerts before failing on the views.
    """
    try:
        create_views(pipeline)
    except SqlClientNotAvailable:
        logger.warning("destination %s has no SQL: views not created", name)
    except ViewsNotRebuiltError as exc:
        return exc
    return None


def _deliver_after_load(pipeline: dlt.Pipeline, channels: List[Channel], where: str) -> Any:
    """Delivery after a load that succeeded: whatever goes wrong, the sync stays a success
    and the alerts wait in the destination for the next run."""
    try:
        return deliver_pending(pipeline, channels)
    except SqlClientNotAvailable:
        logger.warning("destination %s has no SQL: alerts are not delivered", where)
    except Exception as exc:  # noqa: BLE001  (the load succeeded: the sync stays a success)
        reason = destination_fault(exc, where) or explain(exc) or type(exc).__name__
        logger.warning("alerts not delivered this run (they wait for the next): %s", reason)
    return None


def deliver_alerts(pipeline: dlt.Pipeline, wait_seconds: float = 0.0) -> DeliveryReport:
    """Delivers the alerts not yet delivered, under the writer lock (the DAG's own task).

    Raises:
        AlertDeliveryError: some stay undelivered (a channel down): the task fails and its
            retries try again.
    """
    with writer_lock(pipeline, wait_seconds):
        report = deliver_pending(pipeline, configured_channels(pipeline))
    if report.problems:
        raise AlertDeliveryError(f"alerts {report.line()}")
    return report
