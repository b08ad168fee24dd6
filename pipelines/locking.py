"""One writer at a time: a run holds exclusive locks for its whole duration.

Locks, all released by the kernel or the server when the process dies (a SIGKILL never
leaves a stale lock), always taken in this order, so that two runs never each hold one
while waiting for the other's:
- a file lock (`flock`) on `<pipelines_dir>/<pipeline_name>.lock`, beside dlt's working
  folder of the pipeline (not inside it: dlt may wipe and recreate that folder during a run),
  which protects that folder: runs sharing a `DLT_DATA_DIR` on one machine;
- a lock of the destination, which excludes every other writer of the same data whatever
  its `DLT_DATA_DIR`, user, pipeline name or machine: on DuckDB a file lock beside the
  database file, on PostgreSQL advisory locks held by a connection of the run, keyed on the
  dataset.
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
    """Another run holds a lock of this pipeline's working folder or of its destination."""


def configured_wait_seconds() -> float:
    """`wait_seconds` under `[resend_imports]` in dlt config (RESEND_IMPORTS__WAIT_SECONDS)."""
    value = dlt.config.get("resend_imports.wait_seconds", float)
    return float(value) if value is not None else 0.0


def holder_text() -> str:
    return f"pid {os.getpid()} on {socket.gethostname()}"


@contextmanager
def writer_lock(pipeline: dlt.Pipeline, wait_seconds: float = 0.0) -> Iterator[None]:
    """Holds the locks of `pipeline`'s working folder, then of its destination, for the
    duration of the block."""
    deadline = time.monotonic() + max(wait_seconds, 0.0)
    with ExitStack() as stack:
        folder = Path(pipeline.pipelines_dir)
        folder.mkdir(parents=True, exist_ok=True)
        where = f"of pipeline {pipeline.pipeline_name}"
        stack.enter_context(_file_lock(folder / f"{pipeline.pipeline_name}.lock", where, deadline))
        name = _destination_name(pipeline)
        if name == "duckdb":
            database = _duckdb_database(pipeline)
            if database is not None:
                where = f"into the DuckDB file {database}"
                stack.enter_context(_file_lock(duckdb_lock_path(database), where, deadline))
        elif name == "postgres":
            from .postgres import advisory_lock

            # the dataset's key first, always: see `legacy_lock_key` for the second
            keys = (lock_key(pipeline), legacy_lock_key(pipeline))
            stack.enter_context(advisory_lock(pipeline, keys, deadline))
        yield


def duckdb_lock_path(database: Path) -> Path:
    """The lock file of the DuckDB file at `database` (a resolved path): `<file>.lock` beside it.

    Beside the database, because that folder is the one place every writer of the file
    shares, whatever its `DLT_DATA_DIR`, user or pipeline name; it must be writable anyway,
    since DuckDB writes its `.wal` there. The path is resolved (symlinks, `..`, relative to
    the current folder) before, so that every way of naming one file names one lock. The
    file is never removed: a run could otherwise lock a file another has just unlinked.
    """
    return database.with_name(f"{database.name}.lock")


def lock_key(pipeline: dlt.Pipeline) -> int:
    """A signed 64-bit key of the dataset, for `pg_advisory_lock`: one writer per dataset,
    whatever the pipeline name. The dataset name as dlt writes it by default (`Resend` and
    `resend-x` are the schemas `resend` and `resend_x`); a naming convention that keeps more
    names apart only makes one lock cover several schemas, never miss one."""
    return _key(f"resend_imports/dataset:{_normalized_dataset(pipeline)}")


def legacy_lock_key(pipeline: dlt.Pipeline) -> int:
    """The key of pipeline and dataset, the only one versions before the dataset's lock took.

    Taken as well (after the dataset's), so that during a rolling upgrade a run of an older
    version and one of this version, same pipeline and dataset, still exclude each other.
    """
    return _key(f"resend_imports:{pipeline.pipeline_name}:{_normalized_dataset(pipeline)}")


def _normalized_dataset(pipeline: dlt.Pipeline) -> str:
    return str(SnakeCaseNaming().normalize_identifier(pipeline.dataset_name))


def _key(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big", signed=True)


def _duckdb_database(pipeline: dlt.Pipeline) -> Optional[Path]:
    """The DuckDB file of the run, once its folder is known usable (the lock file goes there)."""
    # imported here: the run imports this module
    from .resend_imports import check_duckdb_folder, duckdb_file

    database = duckdb_file(pipeline)
    if database is not None:
        check_duckdb_folder(database)
    return database


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
def _file_lock(path: Path, where: str, deadline: float) -> Iterator[None]:
    """Holds an `flock` on `path`; the file names its holder for the runs it keeps waiting.

    Created like the user's other files (0666 less the umask, as DuckDB creates the database).
    A lock file another user created and this one may only read still locks (`flock` needs no
    write access to it); the run then cannot name itself in it.
    """
    try:
        descriptor, writable = os.open(path, os.O_RDWR | os.O_CREAT, 0o666), True
    except PermissionError:
        descriptor, writable = os.open(path, os.O_RDONLY), False
    try:

        def take() -> bool:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True

        def taken() -> str:
            return (
                f"another sync {where} holds {path} ({_read_holder(path)}); run again when"
                " it has finished, or wait for it with --wait SECONDS"
            )

        wait_for(take, deadline, taken)
        if writable:
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
