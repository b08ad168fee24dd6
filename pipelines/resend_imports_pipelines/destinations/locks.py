"""The lock primitives every writer lock is made of: an `flock` that names its holder, and
the wait for a lock another run holds.

Locks built from these are released by the kernel or the server when the process dies (a
SIGKILL never leaves a stale lock). A run that finds a lock taken waits up to its deadline,
then fails with `SyncLockedError` naming who holds it.
"""

import fcntl
import json
import logging
import os
import socket
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from resend_imports.errors import ResendError

from ..formatting import duration

logger = logging.getLogger("resend_imports")

POLL_SECONDS = 0.2


class SyncLockedError(ResendError):
    """Another run holds a lock of this pipeline's working folder or of its destination."""


def holder_text() -> str:
    return f"pid {os.getpid()} on {socket.gethostname()}"


def wait_for(take: Callable[[], bool], deadline: float, held: Callable[[], str]) -> None:
    """Calls `take` until it succeeds or the deadline passes; then raises saying who holds
    the lock (`held()`: "another sync ... holds ... (pid ...)"). A run that waits says
    first for whom, once."""
    waiting = False
    while not take():
        left = deadline - time.monotonic()
        if left <= 0:
            raise SyncLockedError(
                f"{held()}; run again when it has finished, or wait for it with --wait SECONDS"
            )
        if not waiting:
            waiting = True
            logger.info("waiting up to %s for the lock: %s", duration(left), held())
        time.sleep(POLL_SECONDS)


@contextmanager
def file_lock(path: Path, where: str, deadline: float) -> Iterator[None]:
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

        def held() -> str:
            return f"another sync {where} holds {path} ({_read_holder(path)})"

        wait_for(take, deadline, held)
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
    """Who holds a server's lock, from the holder's session (`pg_stat_activity`)."""
    who = application_name or "a session"
    where = f" from {address}" if address else ""
    when = f" since {since.astimezone(UTC).isoformat(timespec='seconds')}" if since else ""
    return f"{who}{where}{when}"
