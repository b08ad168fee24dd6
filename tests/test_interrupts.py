"""Ctrl-C and SIGTERM (`cli/interrupts.py`) wherever they land: the real command, ended in
one line and the signal's exit code, and the next run as if nothing had happened.

The signals are sent on a sign that the process is where the test wants it (its scratch
copy of the table, its start-up), not after a guessed delay."""

import signal
import subprocess
import time
from contextlib import closing
from pathlib import Path
from typing import Callable, List

import duckdb

from resend_imports.scratch import SCRATCH_PREFIX
from resend_imports_pipelines.run.pipeline import PIPELINE_NAME

from .conftest import COMMAND, Account, cli_environment, run_cli

# rows marked deleted that the table carries besides the account's imports: the scratch copy
# of a complete listing reads them all, about a second of DuckDB queries
DELETED_ROWS = 1_000_000
COPY_UNDER_WAY_S = 0.2  # after its file appears: the copy's first batch is being read
SIGNALS = (
    (signal.SIGINT, 130, "interrupted (Ctrl-C)"),
    (signal.SIGTERM, 143, "terminated (SIGTERM)"),
)


def _add_deleted_imports(database: Path, rows: int) -> None:
    """A long history: `rows` imports Resend no longer has, marked deleted as a run marks
    them (the API's truth never holds them, so the verify leaves them be)."""
    with closing(duckdb.connect(str(database))) as connection:
        connection.execute(
            "INSERT INTO resend.contact_imports (id, object, status, created_at, completed_at,"
            " counts__total, counts__created, counts__updated, counts__skipped, counts__failed,"
            " deleted_at, _dlt_load_id, _dlt_id, account)"
            " SELECT 'deleted-' || i, 'contact_import', 'completed',"
            " TIMESTAMPTZ '2020-01-01' + i * INTERVAL 1 SECOND,"
            " TIMESTAMPTZ '2020-01-01' + i * INTERVAL 1 SECOND, 10, 5, 3, 1, 1,"
            " TIMESTAMPTZ '2026-01-01', (SELECT max(_dlt_load_id) FROM resend.contact_imports),"
            " 'deleted-' || i, 'default' FROM range(?) AS t(i)",
            [rows],
        )


def _start(account: Account, *args: str) -> "subprocess.Popen[str]":
    return subprocess.Popen(
        [COMMAND, *args],
        env=cli_environment(account),
        cwd=account.workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # as from a terminal: a shell script's background job would inherit SIGINT ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _wait_for(process: "subprocess.Popen[str]", sign: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 60
    while not sign():
        assert process.poll() is None, f"the run ended before {what}: {process.stderr}"
        assert time.monotonic() < deadline, f"no sign of {what} within 60 s"
        time.sleep(0.002)


def _scratch_copies(account: Account) -> List[Path]:
    working = account.workdir / "dlt" / "pipelines" / PIPELINE_NAME
    return list(working.glob(f"{SCRATCH_PREFIX}*/known.duckdb"))


def _loads_compiled_modules(process: "subprocess.Popen[str]") -> bool:
    """Whether the process has mapped a compiled module of the installed packages: the
    command's imports are under way (Python's own start-up maps none), the signal handlers
    not yet installed (about half a second more)."""
    maps = Path(f"/proc/{process.pid}/maps").read_text()
    return any("site-packages" in line and ".so" in line for line in maps.splitlines())


def _assert_ended_on(process: "subprocess.Popen[str]", code: int, said: str) -> None:
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == code, stderr
    assert len(stderr.splitlines()) == 1, stderr  # no traceback, no second line
    assert stderr.startswith(f"resend-imports: {said}: nothing was half-committed"), stderr


def test_a_signal_while_duckdb_copies_the_table_ends_in_one_line_and_nothing_is_lost(
    make_account: Callable[..., Account],
) -> None:
    # DuckDB takes the KeyboardInterrupt a signal raises in a query and raises its own
    # `RuntimeError: Query interrupted` (dlt wraps it again): the run still ends on the signal
    account = make_account(imports=1000)
    assert run_cli(account, "sync").returncode == 0
    _add_deleted_imports(account.duckdb_path, DELETED_ROWS)
    for sent, code, said in SIGNALS:
        process = _start(account, "sync", "--full-refresh")
        _wait_for(process, lambda: bool(_scratch_copies(account)), "the table's scratch copy")
        time.sleep(COPY_UNDER_WAY_S)
        process.send_signal(sent)
        _assert_ended_on(process, code, said)
    healed = run_cli(account, "sync")
    assert healed.returncode == 0, healed.stderr
    assert account.differences() == []
    assert _scratch_copies(account) == []


def test_ctrl_c_while_the_command_starts_ends_in_one_line(
    make_account: Callable[..., Account],
) -> None:
    account = make_account(imports=10)
    process = _start(account, "sync")
    _wait_for(process, lambda: _loads_compiled_modules(process), "the command's imports")
    process.send_signal(signal.SIGINT)
    _assert_ended_on(process, 130, "interrupted (Ctrl-C)")
    assert account.requests() == 0
    assert run_cli(account, "sync").returncode == 0
    assert account.differences() == []
