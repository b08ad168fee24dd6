"""The production path: one writer at a time, destination faults in one line with nothing
lost, crashes that heal by themselves; on DuckDB and on a real PostgreSQL server."""

import fcntl
import json
import os
import socket
import subprocess
import time
from contextlib import closing
from pathlib import Path
from typing import Any, Iterator
from unittest.mock import Mock

import psycopg2
import pytest
from dlt.common.storages.load_package import PackageStorage
from dlt.destinations.exceptions import DatabaseTerminalException
from dlt.load.exceptions import LoadClientJobRetry
from dlt.pipeline.exceptions import PipelineStepFailed

from resend_imports import pending
from resend_imports_pipelines.destinations.postgres import lock_key
from resend_imports_pipelines.failures import explain
from resend_imports_pipelines.run import DestinationFaultError, writer_lock

from .conftest import Account, assert_one_line_error, run_cli
from .scenarios import synced
from .throwaway_postgres import LOADER, ThrowawayPostgres, free_port

EXIT_LOCKED = 75


def sync_cli(account: Account, *args: str, env: Any = None) -> subprocess.CompletedProcess[str]:
    return run_cli(account, "sync", "--destination", account.destination_name, *args, env=env)


# -- one writer at a time ------------------------------------------------------------------


def test_a_held_lock_file_makes_a_sync_decline_in_one_line(account: Account) -> None:
    folder = account.workdir / "dlt" / "pipelines"
    folder.mkdir(parents=True)
    path = folder / "resend_imports.lock"
    with open(path, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write(
            json.dumps({"pid": 4242, "host": "cron-box", "since": "2026-11-26T10:00:00+00:00"})
        )
        held.flush()
        result = sync_cli(account)
        waited = sync_cli(account, "--wait", "0.5")
    assert result.returncode == EXIT_LOCKED and waited.returncode == EXIT_LOCKED
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("resend-imports: locked: another sync")
    assert "pid 4242 on cron-box since 2026-11-26T10:00:00+00:00" in lines[0]
    assert account.requests() == 0
    assert sync_cli(account).returncode == 0  # released: the next run syncs
    assert account.differences() == []


def test_an_advisory_lock_held_elsewhere_makes_a_sync_decline(
    make_account: Any, postgres: ThrowawayPostgres
) -> None:
    account: Account = make_account(destination="postgres")
    pipeline = account.pipeline()
    holder = psycopg2.connect(postgres.dsn(), application_name="airflow worker 7")
    with closing(holder), holder.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s)", (lock_key(pipeline),))
        result = sync_cli(account)
    assert result.returncode == EXIT_LOCKED, result.stderr
    assert "airflow worker 7" in result.stderr and "127.0.0.1" in result.stderr
    assert account.requests() == 0
    assert sync_cli(account).returncode == 0
    assert account.differences() == []


# -- destination faults --------------------------------------------------------------------


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port whose accept queue is full: a connection attempt gets no answer."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        fillers = []
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(listener.getsockname())
            fillers.append(filler)
        yield listener.getsockname()[1]
        for filler in fillers:
            filler.close()


def _grant_reader(postgres: ThrowawayPostgres) -> str:
    with closing(postgres.admin()) as connection, connection.cursor() as cursor:
        cursor.execute("DROP ROLE IF EXISTS reader")
        cursor.execute("CREATE ROLE reader LOGIN PASSWORD 'reader-pw'")
        cursor.execute("REVOKE CREATE ON DATABASE analytics FROM PUBLIC")
    return postgres.dsn(user="reader", password="reader-pw")


FAULTS = {
    "refused": lambda pg, port: pg.dsn(port=free_port()),
    "unknown host": lambda pg, port: pg.dsn(host="no-such-host.invalid"),
    "connect timeout": lambda pg, port: pg.dsn(port=port) + "?connect_timeout=2",
    "wrong password": lambda pg, port: pg.dsn(password="not-the-password"),
    "password missing": lambda pg, port: pg.dsn(password=None),
    "database missing": lambda pg, port: pg.dsn(database="analytcs"),
    "no privilege": lambda pg, port: _grant_reader(pg),
}
FAULTS["connection string mistyped"] = lambda pg, port: pg.dsn().split("//", 1)[1]
FAULTS["TLS required, none offered"] = lambda pg, port: pg.dsn() + "?sslmode=require"
EXPECTED = {
    "refused": "connection refused",
    "unknown host": "unknown host 'no-such-host.invalid'",
    "connect timeout": "no answer within 2 s (connect timeout)",
    "wrong password": (
        "the server refused the connection of user 'loader' (password authentication failed"
    ),
    "password missing": (
        "missing configuration: password (e.g. DESTINATION__POSTGRES__CREDENTIALS__PASSWORD)"
    ),
    "database missing": "database 'analytcs' does not exist",
    "no privilege": "may not create or write the dataset's schema",
    "connection string mistyped": "the connection string in DESTINATION__POSTGRES__CREDENTIALS",
    "TLS required, none offered": "server does not support SSL, but SSL was required",
}


# two faults in `make test`; the whole matrix in `make reliability` (both run in CI)
QUICK_FAULTS = ("refused", "wrong password")


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(fault, marks=() if fault in QUICK_FAULTS else pytest.mark.reliability)
        for fault in sorted(FAULTS)
    ],
)
def test_each_postgres_fault_is_one_line_and_the_next_run_is_whole(
    make_account: Any, postgres: ThrowawayPostgres, silent_port: int, fault: str
) -> None:
    account: Account = make_account(imports=300, destination="postgres")
    assert sync_cli(account).returncode == 0
    account.store.advance(new=40, seconds=600)
    dsn: str = FAULTS[fault](postgres, silent_port)  # type: ignore[no-untyped-call]
    failed = sync_cli(account, env={"DESTINATION__POSTGRES__CREDENTIALS": dsn})
    assert failed.returncode == 1, failed.stderr
    assert_one_line_error(failed, EXPECTED[fault])
    if fault not in ("password missing", "connection string mistyped"):
        assert "PostgreSQL 127.0.0.1:" in failed.stderr or "no-such-host" in failed.stderr
    for secret in ("Loader-pw-doNotLeak-7", "not-the-password", "reader-pw"):
        assert secret not in failed.stderr + failed.stdout
    recovered = sync_cli(account)
    assert recovered.returncode == 0, recovered.stderr
    assert account.differences() == []


def test_postgres_stopped_is_one_line_and_nothing_is_lost(
    make_account: Any, postgres: ThrowawayPostgres
) -> None:
    account: Account = make_account(imports=300, destination="postgres")
    assert sync_cli(account).returncode == 0
    account.store.advance(new=40, seconds=600)
    postgres.stop_server()
    account.simulator.reset_stats()
    try:
        failed = sync_cli(account)
    finally:
        postgres.start_server()
    assert failed.returncode == 1
    assert_one_line_error(
        failed, f"PostgreSQL 127.0.0.1:{postgres.port}/analytics: connection refused"
    )
    assert account.requests() == 0
    assert sync_cli(account).returncode == 0
    assert account.differences() == []


def test_postgres_lost_after_paging_is_one_line_and_the_next_run_is_whole(
    make_account: Any, postgres: ThrowawayPostgres
) -> None:
    from resend_imports_pipelines.failures import explain

    account, pipeline = synced(make_account(imports=300, destination="postgres"))
    account.store.advance(new=250, seconds=600)

    def stop_while_paging(path: str, body: Any) -> Any:
        if postgres.is_running():
            postgres.stop_server("immediate")
        return body

    account.simulator.rewrite = stop_while_paging
    try:
        with pytest.raises(DestinationFaultError) as failure:
            account.sync(pipeline)
    finally:
        account.simulator.rewrite = None
        postgres.start_server()
    message = explain(failure.value)
    assert message is not None and "lost the connection" in message, failure.value
    assert f"PostgreSQL 127.0.0.1:{postgres.port}/analytics" in message
    # the run compares each page with the table: it stopped while extracting, nothing waits
    assert not pipeline.has_pending_data
    account.sync(account.pipeline())
    assert account.differences() == []


@pytest.mark.reliability
def test_postgres_lost_during_the_load_is_one_line_and_the_next_run_is_whole(
    make_account: Any, postgres: ThrowawayPostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dlt.destinations.impl.postgres.postgres import PostgresClient

    from resend_imports_pipelines.failures import explain

    account, pipeline = synced(make_account(imports=300, destination="postgres"))
    account.store.advance(new=250, seconds=600)
    original = PostgresClient.create_load_job
    jobs: list[str] = []

    def stop_after_the_first_job(
        self: Any, table: Any, file_path: str, *args: Any, **kw: Any
    ) -> Any:
        jobs.append(file_path)
        if len(jobs) == 2:
            postgres.stop_server("immediate")
        return original(self, table, file_path, *args, **kw)

    monkeypatch.setattr(PostgresClient, "create_load_job", stop_after_the_first_job)
    try:
        with pytest.raises(DestinationFaultError) as failure:
            account.sync(pipeline, full_refresh=True)
    finally:
        monkeypatch.undo()
        postgres.start_server()
    message = explain(failure.value)
    assert message is not None and "lost the connection" in message, failure.value
    account.sync(account.pipeline())
    assert account.differences() == []


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs: a full disk on demand (needs root, as CI runs)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.fail("the full-disk tests mount a small tmpfs and need root (CI runs as root)")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.reliability  # the heavier faults run in `make reliability`
@pytest.mark.parametrize("full", ["DLT_DATA_DIR", "DuckDB file"])
def test_a_full_disk_is_one_line_and_the_next_run_is_whole(
    make_account: Any, tiny_disk: Path, full: str
) -> None:
    account: Account = make_account(imports=300)
    assert sync_cli(account).returncode == 0
    account.store.advance(new=8000, seconds=600)
    env = {"DLT_DATA_DIR": str(tiny_disk / "dlt")}
    if full == "DuckDB file":
        small = tiny_disk / "imports.duckdb"
        small.write_bytes(account.duckdb_path.read_bytes())
        (tiny_disk / "ballast").write_bytes(b"\0" * (3 * 2**20 - small.stat().st_size - 65536))
        env = {"DESTINATION__DUCKDB__CREDENTIALS": str(small)}
    failed = sync_cli(account, "--full-refresh", env=env)
    assert failed.returncode == 1, failed.stderr
    assert_one_line_error(failed, "no space left on the device")
    assert sync_cli(account).returncode == 0
    assert account.differences() == []


# -- crashes that heal by themselves ---------------------------------------------------------


def test_a_package_left_extracted_and_normalized_heals_on_the_next_run(
    make_account: Any,
    destination_name: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A kill between dlt's rename of the normalized package and the deletion of its
    extracted copy, forced: without the repair every later run failed (Directory not empty)."""
    account, pipeline = synced(make_account(imports=300))
    account.store.advance(new=50, seconds=600)
    original = PackageStorage.delete_package
    normalized = Path(pipeline.working_dir) / "load" / "normalized"

    def killed_before_deleting(
        self: PackageStorage, load_id: str, not_exists_ok: bool = False
    ) -> None:
        extracted = Path(self.storage.storage_path).name == "extracted"
        if extracted and (normalized / load_id).is_dir():
            raise OSError("killed between the rename and the delete")
        original(self, load_id, not_exists_ok)

    monkeypatch.setattr(PackageStorage, "delete_package", killed_before_deleting)
    with pytest.raises(PipelineStepFailed):
        account.sync(pipeline)  # the package moved to normalized, its extracted copy left
    monkeypatch.undo()
    extracted = pipeline.list_extracted_load_packages()
    assert extracted and set(extracted) <= set(pipeline.list_normalized_load_packages())
    account.store.advance(new=5, seconds=600)
    with monkeypatch.context() as without_repair:
        without_repair.setattr(pending, "repair_package_storage", lambda p: None)
        with pytest.raises(PipelineStepFailed, match="Directory not empty"):
            account.sync(account.pipeline())  # the wedge this repairs
    account.sync(account.pipeline())
    assert "discarding the extracted copy of load package" in caplog.text
    assert account.differences() == []
    assert not account.pipeline().has_pending_data


def test_a_pending_package_that_cannot_be_finished_is_discarded_in_the_same_run(
    make_account: Any,
    destination_name: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Seen in the SIGKILL trials on PostgreSQL: a kill after the server committed the state
    job and before dlt recorded it; the retried job breaks `_dlt_pipeline_state`'s unique
    `_dlt_id`. Forced here: the run is killed while recording a job, then the destination
    refuses a job of the left package. The next run discards it and lists again, exit 0."""
    account, pipeline = synced(make_account(imports=300))
    account.store.advance(new=50, seconds=600)
    original_complete = PackageStorage.complete_job

    def killed_while_recording(self: PackageStorage, load_id: str, file_name: str) -> str:
        raise KeyboardInterrupt  # the process dies here

    monkeypatch.setattr(PackageStorage, "complete_job", killed_while_recording)
    with pytest.raises((PipelineStepFailed, KeyboardInterrupt)):
        account.sync(pipeline)
    monkeypatch.setattr(PackageStorage, "complete_job", original_complete)
    left = set(pipeline.list_normalized_load_packages())
    assert left
    client_class = type(pipeline.destination_client())
    original_job = client_class.create_load_job

    def refuses_the_left_package(self: Any, table: Any, file_path: str, *a: Any, **k: Any) -> Any:
        if any(load_id in file_path for load_id in left):
            raise DatabaseTerminalException(Exception("duplicate key value violates unique"))
        return original_job(self, table, file_path, *a, **k)

    monkeypatch.setattr(client_class, "create_load_job", refuses_the_left_package)
    account.store.advance(new=5, seconds=600)
    summary = account.sync(account.pipeline())
    assert "could not be finished and was discarded" in caplog.text
    assert summary.mode == "incremental"
    assert account.differences() == []


def test_the_advisory_lock_outlives_an_idle_session_timeout(
    make_account: Any, postgres: ThrowawayPostgres
) -> None:
    account: Account = make_account(destination="postgres")
    with closing(postgres.admin()) as connection, connection.cursor() as cursor:
        cursor.execute(f"ALTER ROLE {LOADER} SET idle_session_timeout = '1s'")
    try:
        pipeline = account.pipeline()
        with writer_lock(pipeline):
            time.sleep(2.5)  # idle: the server would have ended a plain session by now
            other = psycopg2.connect(postgres.dsn())
            with closing(other), other.cursor() as cursor:
                cursor.execute("SELECT pg_try_advisory_lock(%s)", (lock_key(pipeline),))
                assert cursor.fetchone() == (False,)
    finally:
        with closing(postgres.admin()) as connection, connection.cursor() as cursor:
            cursor.execute(f"ALTER ROLE {LOADER} RESET idle_session_timeout")


def test_one_dataset_is_one_lock_whatever_its_case(account: Account) -> None:
    assert lock_key(account.pipeline(dataset="Resend")) == lock_key(account.pipeline())


def test_a_key_with_a_newline_works_and_one_with_a_space_is_refused(account: Account) -> None:
    from .conftest import API_KEY

    assert run_cli(account, "sync", key=API_KEY + "\n").returncode == 0
    refused = run_cli(account, "sync", key="re_abc def")
    assert_one_line_error(refused, "the Resend API key contains spaces or control characters")
    assert "re_abc" not in refused.stderr


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("setting", "words"),
    [
        ("statement_timeout", "canceling statement due to statement timeout"),
        # the bound README suggests for a wait on another session's lock
        ("lock_timeout", "canceling statement due to lock timeout"),
    ],
)
def test_a_timeout_during_the_load_is_one_line_and_the_next_run_loads_the_data(
    make_account: Any, postgres: ThrowawayPostgres, setting: str, words: str
) -> None:
    # before: "resend-imports: unexpected error: PipelineStepFailed", exit 3 and a traceback,
    # after dlt's LoadClientJobRetry (57014 is no lost connection: no destination's fault)
    account: Account = make_account(imports=300, destination="postgres")
    assert sync_cli(account).returncode == 0
    account.store.advance(new=40, seconds=600)
    with closing(postgres.admin()) as server, server.cursor() as cursor:
        cursor.execute(f"ALTER ROLE {LOADER} IN DATABASE analytics SET {setting} = '1s'")
    holder = postgres.admin("analytics")
    try:
        holder.autocommit = False
        with holder.cursor() as cursor:  # reads pass, the load's writes wait past the timeout
            cursor.execute("LOCK TABLE resend.contact_imports IN SHARE MODE")
        failed = sync_cli(account)
    finally:
        holder.close()
        with closing(postgres.admin()) as server, server.cursor() as cursor:
            cursor.execute(f"ALTER ROLE {LOADER} IN DATABASE analytics RESET {setting}")
    assert failed.returncode == 1, failed.stderr
    assert_one_line_error(failed, "the load of contact_imports kept failing (5 attempts;")
    assert f"the database said: {words})" in failed.stderr
    assert "the next run loads it: nothing is lost" in failed.stderr
    waiting = account.workdir / "dlt" / "pipelines" / "resend_imports" / "load" / "normalized"
    assert len(list(waiting.iterdir())) == 1  # the package waits for the next run

    assert sync_cli(account).returncode == 0
    assert account.differences() == []


def test_a_retried_job_restored_from_its_package_is_told_by_the_text_dlt_kept() -> None:
    # a job restored from its package carries the database's error as text only
    kept = (
        'Traceback (most recent call last):\n  File "x.py", line 1, in run\n'
        "psycopg2.errors.QueryCanceled: canceling statement due to statement timeout\n\n"
        "dlt.destinations.exceptions.DatabaseTransientException: canceling statement due to"
        " statement timeout\n"
    )
    retry = LoadClientJobRetry("1", "contact_imports.63c927f1c7.sql", 5, 5, kept, None)  # type: ignore[arg-type]
    failed = PipelineStepFailed(Mock(pipeline_name="p"), "load", "1", retry)
    assert explain(failed) == (
        "the load of contact_imports kept failing (5 attempts; the database said: canceling"
        " statement due to statement timeout); the extracted data waits in DLT_DATA_DIR and"
        " the next run loads it: nothing is lost"
    )
