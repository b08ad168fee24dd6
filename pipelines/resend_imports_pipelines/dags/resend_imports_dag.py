"""Hourly sync of Resend contact imports into DuckDB (or any dlt destination).

The sync task runs the same `run_sync` as the CLI: it holds the pipeline's writer lock (a
file lock in the worker's DLT_DATA_DIR and, on PostgreSQL, an advisory lock keyed on pipeline
and dataset), so a DAG run and a manual sync on another machine never write at once; one that
finds the lock taken waits `wait_seconds` (under [sources.resend_imports]), then fails and is
retried. dlt's Airflow helper (`PipelineTasksGroup`) is not used because it
runs the pipeline itself, with no way to hold a lock around the run. The incremental state
comes back from the destination at every run, so the DuckDB file must be an absolute path:
`DESTINATION__DUCKDB__CREDENTIALS`, or by default `$AIRFLOW_HOME/data/resend_imports.duckdb`.
With several workers, load into a warehouse: an Airflow Connection `resend_imports_destination`
of type postgres (its password stays in Airflow's store), or `RESEND_IMPORTS_DESTINATION`
(postgres, bigquery, snowflake...) with the credentials configured the dlt way. The key
comes from `RESEND_API_KEY` or `SOURCES__RESEND_IMPORTS__API_KEY`; every setting of the
source (e.g. `full_refresh_every_days`) is read the dlt way, as for the CLI.

Several accounts (`[sources.resend_imports.accounts]`) fan out over account groups: the
`account_groups` task splits the configured account names (never their keys) into
`account_groups` groups (`SOURCES__RESEND_IMPORTS__ACCOUNT_GROUPS`, default 1), and `sync` is
mapped over them (dynamic task mapping), one task instance per group, each listing its
accounts concurrently. Concurrency model: one writer per dataset. The mapped instances run
one at a time (`max_active_tis_per_dagrun=1`), and each holds the dataset's writer lock while
it runs (on DuckDB the file lock, so two tasks never write the same file; on PostgreSQL the
advisory lock keyed on the dataset, so dlt's schema changes never race, as dlt advises for
parallel loads into one dataset). A group gains isolation, not parallel writes: a group
whose account fails fails (and retries) alone, after the others of the group loaded, and
later groups still run. Parallel writers would need a dataset per group.

The views over the table (`refresh_views`) are rebuilt by a task of their own, after the
sync, whenever they are missing or older than the table's columns; when they cannot be (a
view of a user that blocks the rebuild on PostgreSQL), that task fails in one line that says
which view and what to do, and the loaded data stands.

Alerts (`[sources.resend_imports.alerts]`, `RUNTIME__SLACK_INCOMING_HOOK`) are raised by the
sync task, in its load, and delivered by a task of their own, last: a Slack or webhook
outage fails (and retries) only `deliver_alerts`; what it could not send waits in the
`contact_import_alerts` table for its retry or the next DAG run.
"""

import logging
import os
from datetime import datetime, timedelta
from typing import List, Optional, Tuple

import dlt
from airflow.sdk import Connection, dag, task
from airflow.sdk.exceptions import AirflowNotFoundException

from resend_imports.errors import ResendError
from resend_imports_pipelines.run import (
    configured_wait_seconds,
    deliver_alerts,
    make_pipeline,
    refresh_views,
    run_sync,
)
from resend_imports_pipelines.run.scheduler import (
    CONNECTION_ID,
    account_groups,
    destination_for_scheduler,
    log_failure,
)

logger = logging.getLogger("resend_imports")


def _connection() -> Optional[Tuple[str, str]]:
    """The Airflow Connection `resend_imports_destination` (its type and URI), if defined."""
    try:
        connection = Connection.get(CONNECTION_ID)
    except AirflowNotFoundException:
        return None
    return str(connection.conn_type), str(connection.get_uri())


def _pipeline() -> dlt.Pipeline:
    return make_pipeline(destination_for_scheduler(connection=_connection()))


@dag(
    dag_id="resend_contact_imports",
    schedule="@hourly",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={
        "owner": "data",
        # a task retry after the client's own retries ran out, or the lock was taken; 0 in tests
        "retries": int(os.environ.get("RESEND_IMPORTS_DAG_RETRIES", "2")),
        "retry_delay": timedelta(minutes=5),
        "retry_exponential_backoff": True,
        "on_failure_callback": log_failure,
    },
    tags=["resend", "dlt"],
    doc_md=__doc__,
)
def resend_contact_imports() -> None:
    @task(task_id="account_groups")
    def groups() -> List[Optional[List[str]]]:
        """The account names of each group (None: every account, the single group)."""
        return account_groups()

    @task(max_active_tis_per_dagrun=1)  # one writer per dataset: see the module's text
    def sync(accounts: Optional[List[str]]) -> None:
        """One sync of a group's accounts, under the writer lock; its summary goes to the
        task log. An account that failed fails the task after the others loaded."""
        summary = run_sync(
            _pipeline(),
            wait_seconds=configured_wait_seconds(),
            deliver_alerts=False,
            refresh_views=False,  # the next task's: a view failure fails only that task
            account_names=accounts,
        )
        for line in summary.lines():
            logger.info(line)
        failed = summary.failed_accounts
        for report in failed:
            logger.error("resend-imports: error: account %s: %s", report.account, report.error)
        if failed:
            names = ", ".join(report.account for report in failed)
            raise ResendError(f"accounts {names} failed (the others loaded)")

    # after the views (both take the lock: one after the other, never racing for it), and
    # whatever became of the sync: alerts of earlier runs still go out
    @task(task_id="deliver_alerts", trigger_rule="all_done")
    def deliver() -> None:
        """Sends the alerts not yet delivered (under the lock); fails while any stay."""
        report = deliver_alerts(_pipeline(), configured_wait_seconds())
        logger.info("alerts: %s", report.line())

    @task(task_id="refresh_views")
    def views() -> None:
        """The SQL views over the table, rebuilt when missing or older than its columns (under
        the lock too); fails in one line when they cannot be, and its retry tries again."""
        rebuilt = refresh_views(_pipeline(), configured_wait_seconds())
        logger.info("views: %s", f"(re)created {', '.join(rebuilt)}" if rebuilt else "current")

    sync.expand(accounts=groups()) >> views() >> deliver()


resend_contact_imports()
