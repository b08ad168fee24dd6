"""A load that failed for a cause the run can put right, put right and loaded once more in the
same run: the run's own load (the command line's sync) and the packages an interrupted run
left (`pending.py`) alike. A cause that persists would otherwise fail every later run too,
and a package left pending would fail every later run before it even lists.

The causes put right:

- an Iceberg table with a column no snapshot carries (`bucket_repairs.align_iceberg_snapshots`);
- DuckDB out of its memory limit: twice the limit. The limit keeps a run small, but what a
  load needs grows with what it merges: a complete listing in which every row differs (a field
  Resend added to every import, a column a person dropped) merges the whole table. A limit
  that is not a size (DuckDB's default, a share of the RAM) is left alone.

The load again is dlt's `load()` of the same package: the jobs that completed stay completed,
and dlt merges its trace into the run's (the run's report is the extraction's).
"""

import logging
import re
from typing import Callable, Optional, Tuple
from weakref import WeakKeyDictionary

import dlt
import duckdb
from dlt.destinations.impl.duckdb.configuration import DuckDbCredentials
from dlt.load.exceptions import LoadClientJobRetry
from dlt.pipeline.exceptions import PipelineStepFailed

from .bucket_repairs import align_iceberg_snapshots
from .causes import causes

logger = logging.getLogger("resend_imports")
# The configured memory limit (number, unit) of each pipeline whose limit a load raised: dlt
# keeps the raised credentials as the pipeline's own from then on
_CONFIGURED: "WeakKeyDictionary[dlt.Pipeline, Tuple[float, str]]" = WeakKeyDictionary()

# How many times one package is loaded again, at most
LOADS_AGAIN = 3
# DuckDB's memory limit is raised to at most this many times the configured one
MEMORY_CEILING = 8
# A memory limit as a size (the command line's default "64MB"), which a load out of it doubles
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B)\s*$", re.IGNORECASE)


def load_putting_right(pipeline: dlt.Pipeline, run: Callable[[], object]) -> None:
    """`run` (dlt's run or load of `pipeline`), then the same package loaded again, at most
    `LOADS_AGAIN` times, while the failure's cause can be put right; the last failure is
    raised when it cannot, and a failure of another step as it is."""
    try:
        run()
        return
    except PipelineStepFailed as failure:
        if failure.step != "load":
            raise
        last = failure
    for _ in range(LOADS_AGAIN):
        credentials = None
        if not _aligned_iceberg(pipeline, last):
            credentials = _doubled_memory_limit(pipeline, last)
            if credentials is None:
                break
        try:
            pipeline.load(credentials=credentials)
            return
        except PipelineStepFailed as again:
            last = again
    raise last from last.__cause__


def _aligned_iceberg(pipeline: dlt.Pipeline, failure: PipelineStepFailed) -> bool:
    """True when a job failed in a way dlt retries and an Iceberg table was then aligned."""
    retried = any(isinstance(cause, LoadClientJobRetry) for cause in causes(failure))
    return retried and bool(align_iceberg_snapshots(pipeline))


def _doubled_memory_limit(
    pipeline: dlt.Pipeline, failure: PipelineStepFailed
) -> Optional[DuckDbCredentials]:
    """The pipeline's DuckDB credentials with twice the memory limit, after a load that ran
    out of it; None for any other failure or destination, a limit that is no size, and one
    at `MEMORY_CEILING` times the configured one.

    Given to the load, they stay the pipeline's for the rest of the run (dlt keeps them), so
    that what the run does next (its reads of the table the package grew, its own load) is
    not held to the limit the package overran; the ceiling counts from the configured limit
    all the same. No connection needs changing: dlt's pool sets `global_config` on the first
    connection it opens, and DuckDB keeps one database per file in a process, so these
    credentials set the limit on the database a caller holds open (the command line does,
    for the whole run) as on one opened afresh (a plain `dlt init` pipeline).
    """
    if not any(isinstance(cause, duckdb.OutOfMemoryException) for cause in causes(failure)):
        return None
    # those an earlier load again gave the pipeline, else those dlt resolves from its config
    credentials = pipeline.destination_client().config.credentials
    if not isinstance(credentials, DuckDbCredentials):
        return None
    config = dict(credentials.global_config or {})
    size = _SIZE.match(str(config.get("memory_limit", "")))
    if size is None:
        return None
    limit, unit = float(size.group(1)), size.group(2)
    configured, configured_unit = _CONFIGURED.setdefault(pipeline, (limit, unit))
    if unit != configured_unit or limit * 2 > configured * MEMORY_CEILING:
        return None
    raised = f"{limit * 2:g}{unit}"
    logger.warning(
        "DuckDB ran out of memory while loading (memory_limit %s): loading again with %s;"
        " set memory_limit in DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG to keep it",
        config["memory_limit"],
        raised,
    )
    credentials.global_config = {**config, "memory_limit": raised}
    return credentials
