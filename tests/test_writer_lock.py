"""One writer per destination: two runs on one DuckDB file or one PostgreSQL dataset exclude
each other whatever their DLT_DATA_DIR, pipeline name or (on DuckDB) dataset; a run of the
previous version, which took only the (pipeline, dataset) key, is still excluded; `report`
takes no lock."""

import fcntl
import hashlib
import os
import socket
import subprocess
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from resend_imports_pipelines.destinations import SyncLockedError
from resend_imports_pipelines.destinations.duckdb import lock_path
from resend_imports_pipelines.destinations.postgres import legacy_lock_key
from resend_imports_pipelines.run import writer_lock

from .conftest import COMMAND, Account, cli_environment, run_cli
from .throwaway_postgres import ThrowawayPostgres

EXIT_LOCKED = 75
HOLDER = f"pid {os.getpid()} on {socket.gethostname()}"  # this test process, holding a lock


def sync_cli(account: Account, *args: str, env: Any = None) -> subprocess.CompletedProcess[str]:
    return run_cli(account, "sync", "--destination", account.destination_name, *args, env=env)


def assert_locked_in_one_line(
    result: subprocess.CompletedProcess[str], text: str, waited: bool = False
) -> None:
    assert result.returncode == EXIT_LOCKED, result.stderr
    lines = result.stderr.strip().splitlines()
    if waited:  # it said for whom it waits first, once
        waiting, *lines = lines
        assert " INFO waiting up to 1s for the lock: another sync into" in waiting, waiting
        assert text in waiting and " since " in waiting, waiting
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("resend-imports: locked: another sync into"), lines[0]
    assert text in lines[0] and " since " in lines[0], lines[0]


def other_writer(account: Account) -> Any:
    """Another cron entry on the same destination: its own working folder (the CLI's is
    `<workdir>/dlt`), pipeline name and, on DuckDB, dataset; on PostgreSQL the same dataset
    spelled another way."""
    dataset = "Resend" if account.postgres else "other_dataset"
    return account.pipeline("second_cron", dataset=dataset)


def test_a_sync_in_another_working_folder_is_excluded_and_makes_no_request(
    make_account: Any, destination_name: str
) -> None:
    account: Account = make_account()
    with writer_lock(other_writer(account)):
        result = sync_cli(account)
        started = time.monotonic()
        waited = sync_cli(account, "--wait", "1")
        waited_seconds = time.monotonic() - started
    assert_locked_in_one_line(result, HOLDER)
    assert_locked_in_one_line(waited, HOLDER, waited=True)
    assert waited_seconds >= 1
    if not account.postgres:
        assert f"the DuckDB file {account.duckdb_path} holds" in result.stderr
        assert not account.duckdb_path.exists()
    assert account.requests() == 0


def test_a_waiting_sync_proceeds_once_the_other_releases(
    make_account: Any, destination_name: str
) -> None:
    account: Account = make_account()
    with writer_lock(other_writer(account)):
        waiting = subprocess.Popen(
            [COMMAND, "sync", "--destination", account.destination_name, "--wait", "60"],
            env=cli_environment(account),
            cwd=account.workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        # it holds its working folder's lock, so it is past it and waits for the destination's
        folder_lock = account.workdir / "dlt" / "pipelines" / "resend_imports.lock"
        mark, deadline = f'"pid": {waiting.pid},', time.monotonic() + 30
        while mark not in _text(folder_lock) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert mark in _text(folder_lock)
        time.sleep(0.5)  # a few more attempts
        assert waiting.poll() is None, waiting.communicate()
        assert account.requests() == 0
    stdout, stderr = waiting.communicate(timeout=90)
    assert waiting.returncode == 0, stderr
    assert "synced" in stdout
    assert account.differences() == []


def _text(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def test_a_symlink_and_a_relative_path_to_the_file_are_one_lock(account: Account) -> None:
    (account.workdir / "link.duckdb").symlink_to("imports.duckdb")
    (account.workdir / "sub").mkdir()
    lock = lock_path(account.duckdb_path)
    with writer_lock(account.pipeline("second_cron", dataset="other_dataset")):
        by_link = sync_cli(account, env={"DESTINATION__DUCKDB__CREDENTIALS": "./link.duckdb"})
        by_relative_path = sync_cli(account, "--duckdb", "sub/../imports.duckdb")
    for result in (by_link, by_relative_path):
        assert_locked_in_one_line(result, f"holds {lock} ({HOLDER}")
    assert account.requests() == 0


def test_the_working_folder_is_locked_before_the_destination(account: Account) -> None:
    """The order every run takes its locks in, so that two runs never wait on each other."""
    pipeline = account.pipeline()
    folder_lock = account.workdir / "pipelines" / "resend_imports.lock"
    folder_lock.parent.mkdir(parents=True, exist_ok=True)
    with open(folder_lock, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(SyncLockedError, match="another sync of pipeline resend_imports"):
            with writer_lock(pipeline):
                pass
    assert not lock_path(account.duckdb_path).exists()  # never reached
    with writer_lock(pipeline):
        assert lock_path(account.duckdb_path).exists()


def test_report_takes_no_lock(make_account: Any, destination_name: str) -> None:
    account: Account = make_account()
    account.sync()
    with writer_lock(account.pipeline()):
        result = run_cli(account, "report", "--destination", account.destination_name)
    assert result.returncode == 0, result.stderr
    assert "day (UTC)" in result.stdout


def test_the_previous_versions_key_still_excludes_both_ways(
    make_account: Any, postgres: ThrowawayPostgres
) -> None:
    """A rolling upgrade: a run of the previous version holds only the key of pipeline and
    dataset, computed as it computed it; this version takes that key too."""
    account: Account = make_account(destination="postgres")
    previous_key = int.from_bytes(
        hashlib.sha256(b"resend_imports:resend_imports:resend").digest()[:8], "big", signed=True
    )
    assert legacy_lock_key(account.pipeline()) == previous_key
    old_run = psycopg2.connect(postgres.dsn(), application_name="resend-imports 1.0 on old-box")
    with closing(old_run), old_run.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s)", (previous_key,))
        result = sync_cli(account)
    assert_locked_in_one_line(result, "resend-imports 1.0 on old-box")
    assert account.requests() == 0
    with writer_lock(account.pipeline()):
        old_run = psycopg2.connect(postgres.dsn())
        with closing(old_run), old_run.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", (previous_key,))
            assert cursor.fetchone() == (False,)
