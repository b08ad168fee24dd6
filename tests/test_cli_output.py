"""The first hour of a new user: every command run as a subprocess, its output and exit code
asserted. Each test names the item of the first-hour report it covers."""

import itertools
import os
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from .conftest import COMMAND, Account, assert_one_line_error, cli_environment, run_cli
from .scenarios import synced
from .throwaway_postgres import free_port


def test_1_ctrl_c_and_sigterm_end_in_one_line_and_nothing_is_lost(make_account: Any) -> None:
    account: Account = make_account(imports=2000, rate_limit=20)
    for sent, code, word in (
        (signal.SIGINT, 130, "interrupted"),
        (signal.SIGTERM, 143, "terminated"),
    ):
        account.simulator.reset_stats()
        process = subprocess.Popen(
            [COMMAND, "sync", "--full-refresh"],
            env=cli_environment(account, env={"SOURCES__RESEND_IMPORTS__PAGE_SIZE": "20"}),
            cwd=account.workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # as from a terminal: a shell script's background job would inherit SIGINT ignored
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        deadline = time.monotonic() + 60
        while account.requests("list") < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(sent)
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == code, stderr
        assert "Traceback" not in stderr
        last = stderr.strip().splitlines()[-1]
        assert last.startswith(f"resend-imports: {word}") and "nothing was half-committed" in last
    assert run_cli(account, "sync").returncode == 0
    assert account.differences() == []


def test_2_a_refused_connection_is_called_refused(account: Account) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    result = run_cli(
        account,
        "sync",
        env={
            "RESEND_API_URL": closed,
            "SOURCES__RESEND_IMPORTS__MAX_ATTEMPTS": "2",
            "SOURCES__RESEND_IMPORTS__INITIAL_BACKOFF_SECONDS": "0",
        },
    )
    assert_one_line_error(result, "connection refused")
    assert "timed out" not in result.stderr


@pytest.fixture
def read_only_folder(tmp_path: Path) -> Iterator[Path]:
    """A read-only folder holding `x.duckdb`: its mode for a user, a read-only mount for root
    (permissions do not stop root)."""
    import duckdb

    folder = tmp_path / "read-only"
    folder.mkdir()
    if os.geteuid() != 0:
        duckdb.connect(str(folder / "x.duckdb")).close()
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(folder)], check=True)
    try:
        duckdb.connect(str(folder / "x.duckdb")).close()
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_3_local_file_faults_are_one_line_and_report_creates_no_file(
    account: Account, read_only_folder: Path
) -> None:
    missing = account.workdir / "no-such-folder" / "x.duckdb"
    result = run_cli(account, "sync", "--duckdb", str(missing))
    assert_one_line_error(result, f"the folder of the DuckDB file {missing} does not exist")
    assert account.requests() == 0
    locked = read_only_folder / "x.duckdb"
    env = {"DESTINATION__DUCKDB__CREDENTIALS": str(locked)}
    result = run_cli(account, "sync", env=env)
    assert_one_line_error(result, f"cannot write the DuckDB file {locked}")
    # the report only reads: a read-only folder will do, and the file holds nothing yet
    result = run_cli(account, "report", env=env)
    assert_one_line_error(result, f"no dataset 'resend' in the DuckDB file {locked}")
    typo = account.workdir / "imprts.duckdb"
    result = run_cli(account, "report", "--duckdb", str(typo))
    assert_one_line_error(result, f"no DuckDB file at {typo}: run `resend-imports sync` first")
    assert not typo.exists()
    result = run_cli(account, "sync", env={"DLT_DATA_DIR": str(read_only_folder / "dlt")})
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr


def test_4_where_the_data_went_and_where_settings_come_from(
    account: Account, tmp_path: Path
) -> None:
    mine = account.workdir / "mine.duckdb"
    synced = run_cli(account, "sync", "--duckdb", str(mine))
    assert synced.returncode == 0, synced.stderr
    assert f"on DuckDB file {mine} (first run" in synced.stdout.splitlines()[0]
    wrong = run_cli(account, "report", "--destination", "mine.duckdb")
    assert_one_line_error(wrong, "for a DuckDB file, --duckdb mine.duckdb")
    assert run_cli(account, "report", "--duckdb", str(mine)).returncode == 0
    help_text = run_cli(account, "sync", "--help").stdout
    for variable in (
        "RESEND_API_KEY",
        "RESEND_API_URL",
        "DESTINATION__DUCKDB__CREDENTIALS",
        "DESTINATION__POSTGRES__CREDENTIALS",
        "DLT_DATA_DIR",
    ):
        assert variable in help_text
    demo = subprocess.run(
        [COMMAND, "demo", "--imports", "60", "--file", "try.duckdb"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert demo.returncode == 0, demo.stderr
    hint = demo.stdout.strip().splitlines()[-1]
    assert hint.startswith("explore it: ")
    explore = subprocess.run(
        shlex.split(hint.removeprefix("explore it: ")),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert explore.returncode == 0, explore.stderr
    assert "Contact imports per day" in explore.stdout


def test_5_summaries_say_what_happened(make_account: Any) -> None:
    account: Account = make_account(imports=300, stuck=0)
    assert run_cli(account, "sync").returncode == 0
    account.store.advance(new=0, seconds=3600)
    account.store.advance(new=0, seconds=3600)
    assert run_cli(account, "sync").returncode == 0
    quiet = run_cli(account, "sync")
    assert quiet.stdout.startswith("nothing changed in resend.contact_imports on DuckDB file")
    account.store.advance(new=12, seconds=60)
    queued = sum(item["status"] == "queued" for item in account.store.truth())
    filtered = run_cli(account, "sync", "--status", "queued")
    first = filtered.stdout.splitlines()[0]
    assert first.startswith(f"listed {queued} contact imports with status queued")
    assert "filtered run" in first and "still open" not in filtered.stdout


@pytest.mark.reliability  # ~10 s of a rate-limited listing: in `make reliability`
def test_6_progress_every_two_seconds_with_an_estimate(make_account: Any) -> None:
    account: Account = make_account(imports=3000, rate_limit=20)
    small_pages = {"SOURCES__RESEND_IMPORTS__PAGE_SIZE": "25"}
    quiet = run_cli(account, "sync", "--progress", "none", env=small_pages)
    assert quiet.returncode == 0 and "listed " not in quiet.stderr
    result = run_cli(
        account,
        "sync",
        "--full-refresh",
        "--progress",
        "lines",
        env={"SOURCES__RESEND_IMPORTS__PAGE_SIZE": "25"},
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if "listed " in line]
    assert len(lines) >= 2, result.stderr
    times = [time.mktime(time.strptime(line[:19], "%Y-%m-%d %H:%M:%S")) for line in lines]
    assert all(b - a <= 3 for a, b in itertools.pairwise(times))
    assert re.search(
        r"listed [\d,]+ contact imports \([\d,]+ requests, [\d,]+/s, [\d.]+ s;", lines[0]
    )
    assert "of the 3,000 the table holds" in lines[0]


def test_7_dlt_warnings_a_user_cannot_act_on_stay_at_debug(
    make_account: Any, postgres: Any
) -> None:
    account: Account = make_account(imports=100)
    assert (
        run_cli(
            account,
            "sync",
            "--destination",
            "postgres",
            env={"DESTINATION__POSTGRES__CREDENTIALS": postgres.dsn()},
        ).returncode
        == 0
    )
    assert run_cli(account, "sync").returncode == 0
    report = run_cli(account, "report")
    assert report.returncode == 0 and report.stderr == "", report.stderr


def test_8_flags_after_the_command_and_no_abbreviations(account: Account) -> None:
    debug = run_cli(account, "sync", "--log-level", "DEBUG")
    assert debug.returncode == 0 and "DEBUG" in debug.stderr
    typo = run_cli(account, "sync", "--ful-refresh")
    assert typo.returncode == 2
    assert "usage: resend-imports sync" in typo.stderr and "--ful-refresh" in typo.stderr
    abbreviated = run_cli(account, "sync", "--full")
    assert abbreviated.returncode == 2 and "--full" in abbreviated.stderr


def test_9_report_fits_100_columns_with_percentages_in_utc(make_account: Any) -> None:
    account: Account = make_account(imports=1500)
    assert run_cli(account, "sync").returncode == 0
    narrow = run_cli(account, "report")
    assert narrow.returncode == 0, narrow.stderr
    assert max(len(line) for line in narrow.stdout.splitlines()) <= 100
    assert "day (UTC)" in narrow.stdout and "created at (UTC)" in narrow.stdout
    worst = narrow.stdout.split("Worst finished imports by failure rate\n")[1].splitlines()
    assert re.search(r" \d+\.\d%$", worst[2])
    wide = run_cli(account, "report", "--wide")
    assert max(len(line) for line in wide.stdout.splitlines()) > 100
    assert "skipped" in wide.stdout


def test_10_demo_refuses_zero_imports_and_keeps_the_file(tmp_path: Path) -> None:
    existing = tmp_path / "demo.duckdb"
    existing.write_bytes(b"keep me")
    result = subprocess.run(
        [COMMAND, "demo", "--imports", "0"], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 2 and "at least 1" in result.stderr
    assert existing.read_bytes() == b"keep me"


def test_second_pass_4_help_shows_the_working_folder_dlt_uses_for_this_user(
    account: Account, tmp_path: Path
) -> None:
    env = cli_environment(account)
    del env["DLT_DATA_DIR"]
    env["HOME"] = str(tmp_path)
    expected = "/var/dlt" if os.geteuid() == 0 else str(tmp_path / ".dlt")
    result = subprocess.run([COMMAND, "sync", "--help"], env=env, capture_output=True, text=True)
    assert f"working folder  DLT_DATA_DIR, here {expected} (dlt's default: ~/.dlt" in result.stdout
    configured = run_cli(account, "sync", "--help")
    assert f"DLT_DATA_DIR, here {account.workdir / 'dlt'} " in configured.stdout


def test_second_pass_6_help_says_what_each_command_reads_and_prints(account: Account) -> None:
    report = run_cli(account, "report", "--help").stdout
    assert "RESEND_API_KEY" not in report and "RESEND_API_URL" not in report
    assert "both tables" not in report and "the alerts raised in the last N days" in report
    assert "DESTINATION__DUCKDB__CREDENTIALS" in report and "read-only" in report
    assert re.search(r"--format \{table,csv,json\}\n\s+table: for people", report)
    assert "at most 3650" in report
    demo = run_cli(account, "demo", "--help").stdout
    assert "no API key and no network" in demo
    assert "(default 3000)" in demo and "(default ./demo.duckdb)" in demo
    sync = run_cli(account, "sync", "--help").stdout
    assert "saying which" in sync  # --wait says who it waits for


def test_second_pass_6_a_host_that_does_not_resolve_is_one_readable_line(
    account: Account,
) -> None:
    result = run_cli(
        account,
        "sync",
        env={
            "RESEND_API_URL": "https://api.resend.invalid",
            "SOURCES__RESEND_IMPORTS__MAX_ATTEMPTS": "2",
            "SOURCES__RESEND_IMPORTS__INITIAL_BACKOFF_SECONDS": "0",
        },
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert re.fullmatch(
        r"resend-imports: error: cannot reach api\.resend\.invalid: the host name does not"
        r" resolve \(DNS\); gave up after 2 attempts in \d+\.\d s",
        last,
    ), last
    retry = result.stderr.strip().splitlines()[0]
    assert "(attempt 2 of 2): no response: the host name does not resolve (DNS)" in retry
    assert not account.duckdb_path.exists()  # the failed first run left no file


README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_queries_return_rows_on_synced_data(make_account: Any) -> None:
    import duckdb

    account, pipeline = synced(make_account(imports=1500, stuck=2))
    for _ in range(3):
        account.store.advance(new=40, seconds=900)
        account.sync(pipeline)
    text = README.read_text()
    block = text.split("## Example queries", 1)[1].split("```sql", 1)[1].split("```", 1)[0]
    queries = [q.strip() for q in re.split(r"^-- \d+\..*$", block, flags=re.M) if q.strip()]
    assert len(queries) == 6
    with duckdb.connect(str(account.duckdb_path), read_only=True) as con:
        for number, query in enumerate(queries, start=1):
            assert con.execute(query).fetchall(), f"README query {number} returns no row"


def test_readme_usage_names_only_options_the_cli_has(account: Account) -> None:
    usage = README.read_text().split("## Real use", 1)[1].split("## Configuration", 1)[0]
    for command in ("sync", "report", "demo"):
        lines = usage.split(f"resend-imports {command} ", 1)[1].split("resend-imports ", 1)[0]
        help_text = run_cli(account, command, "--help").stdout
        for option in set(re.findall(r"\[(--[a-z-]+)", lines)):
            assert option in help_text, f"{command} {option}"


def test_the_default_duckdb_file_is_in_the_folder_the_command_runs_in(account: Account) -> None:
    """dlt's own default is the folder of the pipeline's first run, wherever that was."""
    env = cli_environment(account)
    del env["DESTINATION__DUCKDB__CREDENTIALS"]
    for folder in ("first", "second"):
        (account.workdir / folder).mkdir()
        result = subprocess.run(
            [COMMAND, "sync"], env=env, cwd=account.workdir / folder, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
        assert (account.workdir / folder / "resend_imports.duckdb").exists()
        assert account.differences(account.workdir / folder / "resend_imports.duckdb") == []
