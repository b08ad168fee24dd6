"""One writer at a time: a run holds exclusive locks for its whole duration.

Always taken in this order, so that two runs never each hold one while waiting for the
other's:
- a file lock (`flock`) on `<pipelines_dir>/<pipeline_name>.lock`, beside dlt's working
  folder of the pipeline (not inside it: dlt may wipe and recreate that folder during a run),
  which protects that folder: runs sharing a `DLT_DATA_DIR` on one machine;
- the lock of the destination (see `DestinationKind.lock`), which excludes every other writer
  of the same data whatever its `DLT_DATA_DIR`, user, pipeline name or machine: on DuckDB a
  file lock beside the database file, on PostgreSQL advisory locks held by a connection of
  the run, keyed on the dataset.
A run that finds a lock taken waits up to `wait_seconds`, then fails with `SyncLockedError`
naming who holds it.
"""

import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator, Optional

import dlt
from dlt.common.configuration import configspec
from dlt.common.configuration.specs import BaseConfiguration

from resend_imports.config import SOURCE_SECTIONS, resolve
from resend_imports.options import SECONDS

from ..destinations import Target, target_of
from ..destinations.locks import file_lock


@configspec
class LockSettings(BaseConfiguration):
    """`wait_seconds` under `[sources.resend_imports]`: how long a run waits for a lock."""

    wait_seconds: float = 0.0

    def on_resolved(self) -> None:
        SECONDS.check("wait_seconds", self.wait_seconds)  # as `sync --wait` takes it


def configured_wait_seconds() -> float:
    return resolve(LockSettings(), SOURCE_SECTIONS).wait_seconds


@contextmanager
def writer_lock(
    pipeline: dlt.Pipeline, wait_seconds: float = 0.0, target: Optional[Target] = None
) -> Iterator[None]:
    """Holds the locks of `pipeline`'s working folder, then of its destination (`target`, the
    run's when it has resolved it already), for the duration of the block."""
    deadline = time.monotonic() + max(wait_seconds, 0.0)
    with ExitStack() as stack:
        folder = Path(pipeline.pipelines_dir)
        folder.mkdir(parents=True, exist_ok=True)
        where = f"of pipeline {pipeline.pipeline_name}"
        stack.enter_context(file_lock(folder / f"{pipeline.pipeline_name}.lock", where, deadline))
        target = target or target_of(pipeline)
        stack.enter_context(target.kind.lock(target, deadline))
        yield
