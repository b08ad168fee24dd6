"""The scratch folders of complete listings (`scratch`): a folder a killed run left is removed
by the next run whatever its name or process id, one another live run holds is kept."""

import os
import signal
import subprocess
import sys
import time
from typing import Any, Iterator, List

import pytest

from resend_imports.scratch import (
    LOCK_NAME,
    SCRATCH_PREFIX,
    UNLOCKED_AGE_S,
    ScratchFolder,
    sweep,
)

from .scenarios import synced

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# a run that makes its scratch folder, says where, and lives on until killed
HOLDER = (
    "import sys, time\n"
    "from sources.resend_imports.scratch import ScratchFolder\n"
    "folder = ScratchFolder(sys.argv[1])\n"
    "print(folder.path, flush=True)\n"
    "time.sleep(600)\n"
)


@pytest.fixture
def holder(tmp_path: Any) -> Iterator[Any]:
    """Start another process holding a scratch folder in a given parent; killed at the end."""
    started: List[subprocess.Popen[str]] = []

    def start(parent: str) -> "tuple[subprocess.Popen[str], str]":
        process = subprocess.Popen(
            [sys.executable, "-c", HOLDER, parent],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": ROOT},
        )
        started.append(process)
        assert process.stdout is not None
        return process, process.stdout.readline().strip()

    yield start
    for process in started:
        process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()


def left_by_killed_run(parent: str, name: str) -> str:
    """A folder as a run killed with SIGKILL leaves it: its lock file, held by no one."""
    folder = os.path.join(parent, name)
    os.makedirs(folder)
    for file in (LOCK_NAME, "known.duckdb"):
        with open(os.path.join(folder, file), "wb") as written:
            written.write(b"rows")
    return folder


def scratch_folders(parent: str) -> List[str]:
    return sorted(name for name in os.listdir(parent) if name.startswith(SCRATCH_PREFIX))


def test_a_folder_of_a_killed_run_with_our_pid_is_removed_by_a_complete_listing(
    make_account: Any,
) -> None:
    """In a container every run is PID 1: a folder a killed run left is removed although
    its name holds the process id of the run that finds it, and odd names do not stop the
    listing; the run's own folder goes at its end."""
    account, pipeline = synced(make_account(imports=50, stuck=0))
    names = [f"{os.getpid()}-old", "²-y", "99999999999999999999-x"]
    for name in names:
        left_by_killed_run(pipeline.working_dir, f"{SCRATCH_PREFIX}{name}")
    summary = account.sync(pipeline, full_refresh=True)
    assert summary.mode == "full"
    assert scratch_folders(pipeline.working_dir) == []


def test_a_folder_another_live_run_holds_is_kept(tmp_path: Any, holder: Any) -> None:
    """Kept while its run lives, removed once that run is killed (the kernel drops the
    lock with the process)."""
    parent = str(tmp_path)
    process, held = holder(parent)
    assert os.path.isfile(os.path.join(held, LOCK_NAME))
    folder = ScratchFolder(parent)
    assert scratch_folders(parent) == sorted(os.path.basename(f) for f in (held, folder.path))
    folder.close()
    assert scratch_folders(parent) == [os.path.basename(held)]
    process.send_signal(signal.SIGKILL)
    process.wait()
    sweep(parent)
    assert scratch_folders(parent) == []


def test_folders_of_any_name_are_swept_without_failing(tmp_path: Any) -> None:
    """Names are not parsed: a digit that is not ASCII, a process id beyond any, no id at
    all; a folder without a lock file is kept while young (its run may be locking it)."""
    parent = str(tmp_path)
    names = ["²-y", "99999999999999999999-x", "", "-", "abc"]
    for name in names:
        left_by_killed_run(parent, f"{SCRATCH_PREFIX}{name}")
    unlocked = os.path.join(parent, f"{SCRATCH_PREFIX}unlocked")
    os.makedirs(unlocked)
    sweep(parent)
    assert scratch_folders(parent) == [os.path.basename(unlocked)]
    old = time.time() - UNLOCKED_AGE_S - 60
    os.utime(unlocked, (old, old))
    sweep(parent)
    assert scratch_folders(parent) == []
