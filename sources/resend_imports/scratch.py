"""`ScratchFolder`: where a complete listing keeps the table's rows (`table_copy`), and the
removal of those a killed run left behind.

A SIGKILL or the OOM killer leaves the folder, the table's rows in it. A process id does not
tell whether its run is gone (in a container every run is PID 1), so a run holds an
exclusive `flock` on its folder's `lock` file until it closes the folder: the kernel drops
it when the process dies, however it dies. The next run removes every folder whose lock it
can take, and keeps those another live run holds; folder names are never parsed. The lock
file is locked before it gets its name, so a folder's `lock` is never seen unheld while its
run lives; a folder without one (its run killed before it locked) is removed once it is
older than `UNLOCKED_AGE_S`. Without `fcntl` (Windows), nothing is swept.
"""

import os
import shutil
import sys
import tempfile
import time
from typing import IO, Optional

if sys.platform != "win32":
    import fcntl

SCRATCH_PREFIX = "resend-imports-known-"
LOCK_NAME = "lock"
# a folder without a lock file: its run was killed between making it and locking it, or is
# doing so right now (a moment); an hour apart, it is the former
UNLOCKED_AGE_S = 3600.0


class ScratchFolder:
    """A new scratch folder in `parent`, held by this run until `close` (which removes it),
    made once the folders of runs that are gone have been removed."""

    def __init__(self, parent: str) -> None:
        os.makedirs(parent, exist_ok=True)
        sweep(parent)
        self.path = tempfile.mkdtemp(prefix=SCRATCH_PREFIX, dir=parent)
        self._lock: Optional[IO[bytes]] = None
        if sys.platform != "win32":
            pending = os.path.join(self.path, f"{LOCK_NAME}.new")
            self._lock = open(pending, "wb")  # held until close
            fcntl.flock(self._lock, fcntl.LOCK_EX)
            os.rename(pending, os.path.join(self.path, LOCK_NAME))

    def close(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        if self._lock is not None:
            self._lock.close()
            self._lock = None


def sweep(parent: str) -> None:
    """Remove the scratch folders in `parent` no live run holds."""
    if sys.platform == "win32":
        return
    for entry in os.scandir(parent):
        if entry.name.startswith(SCRATCH_PREFIX) and entry.is_dir(follow_symlinks=False):
            _remove_if_free(entry.path)


def _remove_if_free(folder: str) -> None:
    try:
        lock = open(os.path.join(folder, LOCK_NAME), "rb")
    except FileNotFoundError:
        try:
            unlocked = time.time() - os.stat(folder).st_mtime > UNLOCKED_AGE_S
        except OSError:
            return
        if unlocked:
            shutil.rmtree(folder, ignore_errors=True)
        return
    except OSError:
        return  # not ours to judge (another user's, unreadable): left alone
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return  # held by a live run
        shutil.rmtree(folder, ignore_errors=True)
