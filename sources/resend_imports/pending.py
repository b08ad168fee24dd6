"""Load packages an interrupted run left behind, settled before this source runs: the state
committed in the destination wins, pending packages included.

dlt's `run()` loads what an earlier run left pending and extracts nothing new; a package
extracted against another copy of the table (a restored backup, another dataset or
destination under the same pipeline name) would then commit a state that does not describe
this table. So when the source is created in an active pipeline with a destination (as in
`pipeline.run(resend_source())`: any pipeline that uses this source, a copy made with
`dlt init` included), what is pending is first put right here:

- a dataset folder that a kill left in a bucket before dlt marked it as its own is removed
  (`bucket_repairs`): dlt would fail to create it again on every later run; a folder of dlt's
  own tables a person deleted is created again (dlt writes into it without creating it);
- copies of a package that a kill left half-moved between dlt's folders are deleted. dlt
  extracts a package into `normalize/extracted/<id>`, normalizes it into `load/new/<id>`,
  renames that to `load/normalized/<id>` and only then deletes the extracted copy; a kill
  between two of those steps leaves a copy that every later run trips over (dlt normalizes
  the extracted copy again, and cannot rename it onto the normalized one: `Directory not
  empty`). None of them has started loading: a package in `load/new` was never complete, and
  an extracted copy whose normalized package exists is a leftover;
- packages that continue the committed state are loaded, so that the run then syncs the
  imports as they are now; packages extracted against another copy are discarded, and the
  run lists again from the destination's state. Nothing is lost either way. Before they
  load, an Iceberg table a run left with a new column but no snapshot of it is aligned
  (`bucket_repairs`); a load that fails for a cause the run can put right (that column, DuckDB
  out of its memory limit) is put right and loaded once more (`load_again`), as the run's own
  load is by the command line: a package that needs more memory than the limit would
  otherwise fail every later run.
"""

import logging

import dlt
from dlt.load.exceptions import LoadClientJobFailed, LoadPackageAborted
from dlt.pipeline.exceptions import PipelineStepFailed

from .bucket_repairs import align_iceberg_snapshots, repair_local_bucket
from .causes import causes, refused_rows
from .destination import committed_state
from .incremental import SyncState
from .legacy import resource_state_of
from .load_again import load_putting_right
from .names import dataset_names

logger = logging.getLogger("resend_imports")


def settle_pending_packages(pipeline: dlt.Pipeline) -> bool:
    """Puts right what earlier runs of `pipeline` (the active one, with a destination) left
    pending; the destination is read only when something is (a bucket's dataset folder is
    looked at on every run: a kill can leave it without anything pending). Returns whether
    it loaded data an interrupted run left, which the run's report must say: the run's own
    listing then finds those changes in the table already."""
    repair_local_bucket(pipeline)
    repair_package_storage(pipeline)
    return pipeline.has_pending_data and finish_or_discard_pending(pipeline)


def repair_package_storage(pipeline: dlt.Pipeline) -> None:
    """Deletes the half-moved copies of load packages, with a WARNING for each."""
    # dlt has no public API for these folders
    load_storage = pipeline._get_load_storage()
    normalize_storage = pipeline._get_normalize_storage()
    if not (load_storage.is_storage_ready() and normalize_storage.is_storage_ready()):
        return
    normalized = set(load_storage.normalized_packages.list_packages())
    for load_id in load_storage.new_packages.list_packages():
        logger.warning(
            "discarding load package %s: a killed run left it half normalized; it is"
            " normalized again or extracted again",
            load_id,
        )
        load_storage.new_packages.delete_package(load_id)
    for load_id in normalize_storage.extracted_packages.list_packages():
        if load_id in normalized:
            logger.warning(
                "discarding the extracted copy of load package %s: it was normalized already"
                " (a killed run left both); the normalized package loads",
                load_id,
            )
            normalize_storage.extracted_packages.delete_package(load_id)


def finish_or_discard_pending(pipeline: dlt.Pipeline) -> bool:
    """Loads the packages an interrupted run left, when they continue the state committed in
    the destination (or the destination keeps no state); otherwise discards them. Returns
    whether it loaded them."""
    known, committed, _ = committed_state(pipeline)
    local = SyncState.load(resource_state_of(pipeline.state))
    if not known or local.continues(SyncState.load(committed)):
        logger.warning("loading data left by an interrupted run before syncing")
        align_iceberg_snapshots(pipeline)  # a column a killed run committed: no retries
        try:
            load_putting_right(pipeline, pipeline.run)
            return True
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
            rows = refused_rows(exc)
            logger.warning(
                "the data left by an interrupted run could not be finished and was discarded"
                " (%s); this run lists again from the state the destination holds",
                f"the destination refused the rows of {rows[0]}: {rows[1]}"
                if rows
                else type(refused).__name__,
            )
            return False
    packages = len(pipeline.list_extracted_load_packages()) + len(
        pipeline.list_normalized_load_packages()
    )
    logger.warning(
        "discarding %d load package(s) left by an interrupted run: they were extracted"
        " against another copy of %s (a restored backup, another dataset or destination);"
        " this run lists again from the state the destination holds",
        packages,
        dataset_names(pipeline).dataset,
    )
    pipeline.abort_packages()
    return False
