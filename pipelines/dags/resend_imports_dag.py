"""Hourly sync of Resend contact imports into DuckDB (or any dlt destination).

Built with dlt's Airflow helper around the same source and pipeline as the CLI. Each task
runs in a temporary dlt folder; the pipeline state comes back from the destination, so the
DuckDB file must be an absolute path: `DESTINATION__DUCKDB__CREDENTIALS`, or by default
`$AIRFLOW_HOME/data/resend_imports.duckdb`. With several workers, set
`RESEND_IMPORTS_DESTINATION` to a warehouse (postgres, bigquery, snowflake...). The key comes
from `RESEND_API_KEY`, `SOURCES__RESEND__API_KEY` or dlt's `dlt_secrets_toml` Variable.
"""

import os
from datetime import datetime, timedelta

import dlt
from airflow.sdk import dag, task
from dlt.helpers.airflow_helper import PipelineTasksGroup

from pipelines.resend_imports import PIPELINE_NAME, make_pipeline
from pipelines.scheduling import destination_for_scheduler, log_failure
from pipelines.views import create_views
from sources.resend import resend_source


def _pipeline() -> dlt.Pipeline:
    return make_pipeline(destination_for_scheduler())


@dag(
    dag_id="resend_contact_imports",
    schedule="@hourly",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,  # one writer per DuckDB file
    default_args={
        "owner": "data",
        # a task retry after the client's own retries ran out; 0 in tests
        "retries": int(os.environ.get("RESEND_IMPORTS_DAG_RETRIES", "2")),
        "retry_delay": timedelta(minutes=5),
        "retry_exponential_backoff": True,
        "on_failure_callback": log_failure,
    },
    tags=["resend", "dlt"],
    doc_md=__doc__,
)
def resend_contact_imports() -> None:
    tasks = PipelineTasksGroup(
        PIPELINE_NAME, use_data_folder=False, wipe_local_data=True, use_task_logger=True
    )
    sync = tasks.add_run(_pipeline(), resend_source(), decompose="none", trigger_rule="all_done")

    @task
    def refresh_views() -> None:
        """The SQL views over the table, up to date with its columns."""
        create_views(_pipeline())

    sync[-1] >> refresh_views()


resend_contact_imports()
