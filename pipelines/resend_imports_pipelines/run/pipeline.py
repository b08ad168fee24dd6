"""The dlt pipeline the command line, the DAG and the demo run: its names, where DuckDB
writes by default, and the environment defaults it runs with."""

import os
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

import dlt

from resend_imports.http import NOT_ASCII, UnsafeURLError

from ..delivery.channels import SLACK_HOOK_SETTING

PIPELINE_NAME = "resend_imports"
DATASET_NAME = "resend"
DEFAULT_DESTINATION = "duckdb"
# the destination of a run that names none, for the command line and the DAG alike
DESTINATION_ENV = "RESEND_IMPORTS_DESTINATION"
DUCKDB_FILE_ENV = "DESTINATION__DUCKDB__CREDENTIALS"
DEFAULT_DUCKDB_FILE = f"{PIPELINE_NAME}.duckdb"

DUCKDB_CONFIG_ENV = "DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG"
# 64 MB: a complete listing merges only the rows that differ from the table's; one that finds
# every row different (a field Resend adds to every import, a column a person dropped) merges
# the whole table, and a load that runs out of the limit is loaded again with twice it
# (`resend_imports.load_again`; docs/performance.md)
DEFAULT_DUCKDB_CONFIG = '{"memory_limit": "64MB", "threads": 1, "preserve_insertion_order": false}'
# Arrow's default allocator keeps freed memory for reuse; the system one gives it back
ARROW_POOL_ENV = "ARROW_DEFAULT_MEMORY_POOL"
# A package the destination refuses for its data is aborted (local state rewound to the
# committed one) instead of being retried, and failing, on every later run
AUTO_ABORT_ENV = "LOAD__AUTO_ABORT_ON_TERMINAL_ERROR"
STAGING_LAYOUT_ENV = "DESTINATION__STAGING_DATASET_NAME_LAYOUT"
# DuckDB's memory limit holds for the whole database, not per job: two merges at once (the
# table's and the history's, a million rows each) exhaust the limit where one after the other fit
LOAD_WORKERS_ENV = "LOAD__WORKERS"
# dlt's staging copies, emptied once merged: DuckDB then never writes them into the file
TRUNCATE_STAGING_ENV = "LOAD__TRUNCATE_STAGING_DATASET"
STAGING_LAYOUT = "%s_dlt_staging"
# Plain rows reach DuckDB as INSERT statements of up to half this size, and DuckDB's parser
# takes a few hundred times a statement's size, beside its memory limit: with dlt's 32 MB, a
# load of 10,000 plain rows (100 accounts of 100 imports) peaked at 560 MiB; 512 KB, 220 MiB
DUCKDB_MAX_QUERY_BYTES = 512 * 1024


def duckdb_destination(path: Path | str) -> Any:
    """dlt's DuckDB destination on the file at `path` (made absolute: dlt's own default is
    the folder of the pipeline's first run, wherever that was)."""
    return dlt.destinations.duckdb(str(Path(path).expanduser().resolve()))


def working_folder() -> str:
    """dlt's working folder for the user running the command, as dlt resolves it:
    DLT_DATA_DIR, else ~/.dlt, or /var/dlt when the user is root (a root crontab)."""
    return str(dlt.current.run_context().data_dir)


def configured_destination(environ: Optional[Mapping[str, str]] = None) -> str:
    """`RESEND_IMPORTS_DESTINATION` (a dlt destination name), else DuckDB."""
    environ = os.environ if environ is None else environ
    return environ.get(DESTINATION_ENV) or DEFAULT_DESTINATION


def default_duckdb_file(home: Path) -> Path:
    """The DuckDB file of a run that names none: `resend_imports.duckdb` in `home` (the
    folder the command runs in; `$AIRFLOW_HOME/data` for the DAG)."""
    return home / DEFAULT_DUCKDB_FILE


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
    million imports fit in it; it costs a few percent of a sync's time). A complete listing
    that finds every row of a million-row table different (a field Resend adds to every
    import) merges all of it, and may need more: the run then loads again with twice the
    limit rather than failing at every later run (`resend_imports.load_again`).
    Arrow uses the system allocator (unless ARROW_DEFAULT_MEMORY_POOL says otherwise), so
    that memory freed after a batch is returned. dlt merges through a staging dataset named
    `<dataset>_staging` by default, which is a name people give their own datasets (`resend`
    and `resend_staging`): unless a `staging_dataset_name_layout` is configured, it is
    `<dataset>_dlt_staging` here (the source refuses to merge through a staging dataset
    that is a dataset of its own, whatever the layout). On DuckDB the load jobs run one at
    a time unless LOAD__WORKERS says otherwise (the memory limit is shared by all jobs), and
    plain rows go in INSERTs of at most 256 KB (`DUCKDB_MAX_QUERY_BYTES`), and the staging
    copies are emptied once merged unless LOAD__TRUNCATE_STAGING_DATASET says otherwise (the
    file is checkpointed once a run, without them: half the writing).
    """
    os.environ.setdefault(DUCKDB_CONFIG_ENV, DEFAULT_DUCKDB_CONFIG)
    os.environ.setdefault(ARROW_POOL_ENV, "system")
    os.environ.setdefault(AUTO_ABORT_ENV, "true")
    options: Dict[str, Any] = {}
    if pipelines_dir is not None:
        options["pipelines_dir"] = pipelines_dir
    try:
        pipeline: dlt.Pipeline = dlt.pipeline(
            pipeline_name=pipeline_name,
            destination=destination,
            dataset_name=dataset_name,
            **options,
        )
    except UnicodeEncodeError:
        # dlt's runtime settings decode the Slack hook (it may come obfuscated, base64) as
        # ASCII, the one runtime secret they decode, before the URL policy can judge it
        raise UnsafeURLError(f"{SLACK_HOOK_SETTING} {NOT_ASCII}; the value is not shown") from None
    # read when the destination's configuration resolves, at the run: set before it
    if not _staging_layout_configured(destination):
        os.environ.setdefault(STAGING_LAYOUT_ENV, STAGING_LAYOUT)
    if getattr(pipeline.destination, "destination_name", None) == "duckdb":
        os.environ.setdefault(LOAD_WORKERS_ENV, "1")
        pipeline.destination.caps_params.setdefault("max_query_length", DUCKDB_MAX_QUERY_BYTES)
        os.environ.setdefault(TRUNCATE_STAGING_ENV, "true")
    return pipeline


def _staging_layout_configured(destination: Any) -> bool:
    name = getattr(destination, "destination_name", None) or str(destination)
    return any(
        dlt.config.get(f"{section}.staging_dataset_name_layout") is not None
        for section in ("destination", f"destination.{name}")
    )
