"""One writer at a time: a run holds an exclusive lock for its whole duration.

Two locks, both released by the kernel or the server when the process dies (a SIGKILL never
leaves a stale lock):
- a file lock (`flock`) on `<pipelines_dir>/<pipeline_name>.lock`, beside dlt's working
  folder of the pipeline (not inside it: dlt may wipe and recreate that folder during a run),
  which excludes runs sharing a `DLT_DATA_DIR` on one machine;
- on PostgreSQL, an advisory lock held by a connection of the run, keyed on pipeline and
  dataset, which excludes runs on other machines (an Airflow worker and a manual run).
A run that finds a lock taken waits up to `wait_seconds`, then fails with `SyncLockedError`
naming who holds it.
"""

import fcntl
import hashlib
import json
import os
import socket
import time
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import dlt
from dlt.common.normalizers.naming.snake_case import NamingConvention as SnakeCaseNaming

from sources.resend_imports.errors import ResendError

POLL_SECONDS = 0.2


class SyncLockedError(ResendError):
    """Another run holds the lock of this pipeline and dataset."""


def configured_wait_seconds() -> float:
    """`wait_seconds` under `[resend_imports]` in dlt config (RESEND_IMPORTS__WAIT_SECONDS)."""
    value = dlt.config.get("resend_imports.wait_seconds", float)
    return float(value) if value is not None else 0.0


def holder_text() -> str:
    return f"pid {os.getpid()} on {socket.gethostname()}"


@contextmanager
def writer_lock(pipeline: dlt.Pipeline, wait_seconds: float = 0.0) -> Iterator[None]:
    """Holds the locks of `pipeline` for the duration of the block."""
    deadline = time.monotonic() + max(wait_seconds, 0.0)
    with ExitStack() as stack:
        stack.enter_context(_file_lock(Path(pipeline.pipelines_dir), pipeline, deadline))
        if _destination_name(pipeline) == "postgres":
            from .postgres import advisory_lock

            stack.enter_context(advisory_lock(pipeline, lock_key(pipeline), deadline))
        yield


def lock_key(pipeline: dlt.Pipeline) -> int:
    """A signed 64-bit key of pipeline and dataset, for `pg_advisory_lock`; the dataset name
    as dlt writes it (`Resend` and `resend` are one schema, so one lock)."""
    dataset = SnakeCaseNaming().normalize_identifier(pipeline.dataset_name)
    text = f"resend_imports:{pipeline.pipeline_name}:{dataset}".encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "big", signed=True)


def wait_for(take: Callable[[], bool], deadline: float, taken: Callable[[], str]) -> None:
    """Calls `take` until it succeeds or the deadline passes; then raises with `taken()`."""
    while not take():
        if time.monotonic() >= deadline:
            raise SyncLockedError(taken())
        time.sleep(POLL_SECONDS)


def _destination_name(pipeline: dlt.Pipeline) -> str:
    destination: Any = pipeline.destination
    return str(getattr(destination, "destination_name", "") or "")


@contextmanager
def _file_lock(folder: Path, pipeline: dlt.Pipeline, deadline: float) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{pipeline.pipeline_name}.lock"
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:

        def take() -> bool:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True

        def taken() -> str:
            return (
                f"another sync of pipeline {pipeline.pipeline_name} holds {path}"
                f" ({_read_holder(path)}); run again when it has finished, or wait for it"
                " with --wait SECONDS"
            )

        wait_for(take, deadline, taken)
        since = datetime.now(UTC).isoformat(timespec="seconds")
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": since}
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, json.dumps(holder).encode(), 0)
        yield
    finally:
        os.close(descriptor)  # releases the lock


def _read_holder(path: Path) -> str:
    try:
        holder = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        holder = {}
    if not holder:
        return "holder unknown"
    return f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('since')}"


def describe_holder(application_name: Optional[str], address: Any, since: Any) -> str:
    """Who holds an advisory lock, from the holder's row of `pg_stat_activity`."""
    who = application_name or "a session"
    where = f" from {address}" if address else ""
    when = f" since {since.astimezone(UTC).isoformat(timespec='seconds')}" if since else ""
    return f"{who}{where}{when}"
