"""One sync around the source: under the writer lock, the destination checked first, the
source run by dlt, then the views and the delivery of alerts; and the DAG's own tasks for
those two.

The source settles what earlier runs left pending itself when it is created in the active
pipeline (`sources/resend_imports/pending.py`); this module only adds what a command line
needs: the lock, the checks that fail in one line before any request, the summary, and a
destination fault told in one line that says nothing was lost.
"""

import logging
import time
from typing import Any, Dict, List, Optional

import dlt
from dlt.common.destination.exceptions import SqlClientNotAvailable

from resend_imports import resend_source
from resend_imports.errors import ResendError
from resend_imports.load_again import load_putting_right
from resend_imports.names import dataset_names
from resend_imports.settings import TABLE_NAME

from .. import destinations
from ..analytics.views import ViewsNotRebuiltError, create_views
from ..delivery import (
    AlertDeliveryError,
    Channel,
    DeliveryReport,
    configured_channels,
    declare_marks,
    deliver_pending,
)
from ..destinations import Target, target_of
from ..failures import explain
from ..formatting import count
from .lock import writer_lock
from .summary import SyncSummary
from .trace import report_of

logger = logging.getLogger("resend_imports")


class DestinationFaultError(ResendError):
    """The destination failed during a run; the message names it and what to do."""


class StaleViewsAfterLoadError(ResendError):
    """The run loaded, but its views were not brought up to date: a failure of the run that
    must never read as lost data. `summary` is what the load did, for the caller to show."""

    def __init__(self, summary: SyncSummary, problem: ViewsNotRebuiltError) -> None:
        self.summary = summary
        self.problem = problem
        super().__init__(
            f"the load is done ({count(summary.rows)} contact imports read into"
            f" {summary.table}),"
            f" but {problem}"
        )


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
    target = target_of(pipeline)
    try:
        with writer_lock(pipeline, wait_seconds, target):
            if status is not None:  # else dlt config may set it: an explicit None would win
                source_options["status"] = status
            return _run_locked(
                target,
                started,
                full_refresh,
                loader_file_format,
                deliver_alerts,
                refresh_views,
                source_options,
            )
    except ResendError:
        raise
    except Exception as exc:
        fault = destinations.fault(exc, target.where)
        if fault is None:
            raise
        raise DestinationFaultError(fault) from exc


def _run_locked(
    target: Target,
    started: float,
    full_refresh: bool,
    loader_file_format: Optional[str],
    deliver_alerts: bool,
    refresh_views: bool,
    source_options: Dict[str, Any],
) -> SyncSummary:
    pipeline = target.pipeline
    channels = configured_channels(pipeline) if deliver_alerts else []  # a bad URL fails here
    target.kind.check(target, reading=False)
    with target.kind.held_open(target):  # until the load is in: the views open it on their own
        # the source settles what this pipeline left pending when it is created in it
        pipeline.activate()
        source = declare_marks(resend_source(full_refresh=full_refresh, **source_options))
        # loaded again when the source can put the failure's cause right (DuckDB's memory
        # limit, an Iceberg table's snapshot), as it does for the packages it settles
        load_putting_right(
            pipeline,
            lambda: pipeline.run(source, loader_file_format=loader_file_format),  # type: ignore[arg-type]
        )
    target.kind.after_load(target)
    views_problem = _views_after_load(pipeline) if refresh_views else None
    report = report_of(pipeline)
    delivery = _deliver_after_load(pipeline, channels, target.where) if deliver_alerts else None
    summary = SyncSummary(
        **vars(report),
        elapsed_seconds=time.monotonic() - started,
        destination=target.where,
        table=dataset_names(pipeline).table(TABLE_NAME),
        delivery=delivery,
    )
    if views_problem is not None:
        raise StaleViewsAfterLoadError(summary, views_problem)
    return summary


def _views_after_load(pipeline: dlt.Pipeline) -> Optional[ViewsNotRebuiltError]:
    """Brings the views up to date after a committed load (cheap when they are current).

    A failure is returned, not raised: the load is done, and the run still reports it and
    delivers its alerts before failing on the views.
    """
    try:
        create_views(pipeline)
    except SqlClientNotAvailable:
        # a bucket's tables are read by their own readers (README, "Lakehouse"): nothing
        # for the user to act on, at every run
        name = destinations.destination_name(pipeline)
        logger.info("destination %s has no SQL: views not created", name)
    except ViewsNotRebuiltError as exc:
        return exc
    return None


def _deliver_after_load(
    pipeline: dlt.Pipeline, channels: List[Channel], where: str
) -> Optional[DeliveryReport]:
    """Delivery after a load that succeeded: whatever goes wrong, the sync stays a success
    and the alerts wait in the destination for the next run."""
    try:
        return deliver_pending(pipeline, channels)
    except SqlClientNotAvailable:
        logger.warning("destination %s has no SQL: alerts are not delivered", where)
    except Exception as exc:  # noqa: BLE001  (the load succeeded: the sync stays a success)
        reason = destinations.fault(exc, where) or explain(exc) or type(exc).__name__
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


def refresh_views(pipeline: dlt.Pipeline, wait_seconds: float = 0.0) -> tuple[str, ...]:
    """Brings the views up to date under the writer lock (the DAG's own task); the views it
    (re)created.

    Raises:
        ViewsNotRebuiltError: they cannot be (a view of a user blocks the rebuild): the task
            fails in one line and its retry tries again.
    """
    with writer_lock(pipeline, wait_seconds):
        return create_views(pipeline)
