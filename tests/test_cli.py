"""The `resend-imports` command as users and schedulers run it: exit codes and one-line errors."""

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

import duckdb
import pytest

from resend_imports import resend_source
from resend_imports.causes import causes
from resend_imports.errors import MissingAPIKeyError
from resend_imports_pipelines.simulator import FaultPlan

from .conftest import (
    API_KEY,
    COMMAND,
    RESTRICTED_KEY,
    Account,
    assert_one_line_error,
    run_cli,
)
from .throwaway_postgres import free_port


def test_sync_runs_and_reruns_incrementally(make_account: Any) -> None:
    account: Account = make_account(imports=1500)
    first = run_cli(account, "sync")
    assert first.returncode == 0, first.stderr
    assert (
        "synced 1,500 contact imports into resend.contact_imports on DuckDB file"
        f" {account.workdir / 'imports.duckdb'} (first run" in first.stdout
    )
    assert "requests 15 " in first.stdout
    assert account.differences() == []
    account.store.advance(new=40, seconds=600)
    account.simulator.reset_stats()
    second = run_cli(account, "sync")
    assert second.returncode == 0, second.stderr
    assert "incremental run" in second.stdout and "new 40," in second.stdout
    assert account.requests("list") == 1
    assert account.differences() == []


def test_missing_key(account: Account) -> None:
    result = run_cli(account, "sync", key=None)
    assert_one_line_error(
        result,
        "no Resend API key: set RESEND_API_KEY, SOURCES__RESEND_IMPORTS__API_KEY or api_key"
        " under [sources.resend_imports] in .dlt/secrets.toml (to try the connector without a"
        " key: resend-imports demo)",
    )
    assert account.requests() == 0


def test_the_source_alone_does_not_suggest_the_command_line() -> None:
    """A project made by `dlt init` has the source, not this command: its error names the
    settings only."""
    source = resend_source(api_key="", base_url="http://127.0.0.1:9")
    with pytest.raises(Exception) as failure:  # dlt wraps it: its cause below
        list(source)
    missing = next(c for c in causes(failure.value) if isinstance(c, MissingAPIKeyError))
    assert str(missing).startswith("no Resend API key: set RESEND_API_KEY")
    assert "resend-imports" not in str(missing)


@pytest.mark.parametrize(
    "fault",
    ["rejected key", "no key", "API unreachable"],
)
def test_a_failed_first_sync_leaves_no_duckdb_file(account: Account, fault: str) -> None:
    key = {"rejected key": "re_revoked_key", "no key": None}.get(fault, API_KEY)
    closed = {"RESEND_API_URL": f"http://127.0.0.1:{free_port()}"}
    env = closed if fault == "API unreachable" else {}
    env["SOURCES__RESEND_IMPORTS__MAX_ATTEMPTS"] = "1"
    result = run_cli(account, "sync", env=env, key=key)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert not account.duckdb_path.exists()
    assert not account.duckdb_path.with_name("imports.duckdb.wal").exists()
    report = run_cli(account, "report")
    assert_one_line_error(report, f"no DuckDB file at {account.duckdb_path}")


def test_a_failed_sync_leaves_a_file_that_was_there_before(account: Account) -> None:
    duckdb.connect(str(account.duckdb_path)).close()  # empty, and not the run's own
    result = run_cli(account, "sync", key="re_revoked_key")
    assert result.returncode == 1
    assert account.duckdb_path.exists()
    report = run_cli(account, "report")
    assert_one_line_error(
        report,
        f"no dataset 'resend' in the DuckDB file {account.duckdb_path}: it holds nothing of"
        " this connector yet; run `resend-imports sync` first",
    )
    assert run_cli(account, "sync").returncode == 0
    account.simulator.api_keys = {"re_rotated"}  # a later run fails: the data stays
    assert run_cli(account, "sync").returncode == 1
    assert account.differences() == []


def test_names_are_printed_as_the_database_has_them(account: Account) -> None:
    missing = run_cli(account, "report", "--dataset", "my-resend")
    assert_one_line_error(missing, "no DuckDB file at")
    result = run_cli(account, "sync", "--dataset", "my-resend")
    assert result.returncode == 0, result.stderr
    assert "into my_resend.contact_imports on DuckDB file" in result.stdout.splitlines()[0]
    assert "my-resend" not in result.stdout + result.stderr
    with duckdb.connect(str(account.duckdb_path), read_only=True) as con:
        rows = con.execute("SELECT schema_name FROM duckdb_schemas()").fetchall()
    schemas = {row[0] for row in rows}
    assert {"my_resend", "my_resend_dlt_staging"} <= schemas and "my-resend" not in schemas
    empty = run_cli(account, "report", "--dataset", "Other-Data")
    assert_one_line_error(empty, "no dataset 'other_data' in the DuckDB file")


@pytest.mark.parametrize(
    ("key", "answer"),
    [
        ("re_revoked_key", "HTTP 403 invalid_api_key"),
        (RESTRICTED_KEY, "HTTP 401 restricted_api_key"),
    ],
)
def test_rejected_key_is_one_request_and_one_line(account: Account, key: str, answer: str) -> None:
    first = run_cli(account, "sync")
    assert first.returncode == 0
    account.simulator.reset_stats()
    result = run_cli(account, "sync", env={"SOURCES__RESEND_IMPORTS__API_KEY": key}, key=None)
    assert_one_line_error(result, f"Resend rejected the API key ({answer}")
    assert "SOURCES__RESEND_IMPORTS__API_KEY" in result.stderr
    assert account.requests() == 1
    assert account.differences() == []


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "page_size must be 1 to 100, got 0"),
        ("101", "page_size must be 1 to 100, got 101"),
        ("many", "config value page_size = 'many' is not a valid int"),
    ],
)
def test_bad_page_size(account: Account, value: str, message: str) -> None:
    result = run_cli(account, "sync", env={"SOURCES__RESEND_IMPORTS__PAGE_SIZE": value})
    assert_one_line_error(result, message)
    assert account.requests() == 0


def test_unknown_status_in_config(account: Account) -> None:
    result = run_cli(account, "sync", env={"SOURCES__RESEND_IMPORTS__STATUS": "paused"})
    assert_one_line_error(result, "status must be one of queued, in_progress, completed, failed")


TEN_YEARS_OF_SECONDS = "0 to 315,360,000 seconds"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("READ_TIMEOUT_SECONDS", "inf", "read_timeout_seconds must be above 0 and at most"),
        ("FULL_REFRESH_EVERY_DAYS", "nan", "full_refresh_every_days must be 0 to 3,650 days"),
        ("FULL_REFRESH_EVERY_DAYS", "1e308", "full_refresh_every_days must be 0 to 3,650 days"),
        (
            "MAX_RATE_LIMIT_WAIT_SECONDS",
            "-1",
            f"max_rate_limit_wait_seconds must be {TEN_YEARS_OF_SECONDS}",
        ),
        (
            "MAX_RATE_LIMIT_WAIT_SECONDS",
            "nan",
            f"max_rate_limit_wait_seconds must be {TEN_YEARS_OF_SECONDS}",
        ),
        (
            "INITIAL_BACKOFF_SECONDS",
            "nan",
            f"initial_backoff_seconds must be {TEN_YEARS_OF_SECONDS}",
        ),
        ("WAIT_SECONDS", "nan", f"wait_seconds must be {TEN_YEARS_OF_SECONDS}"),
        ("WAIT_SECONDS", "-3", f"wait_seconds must be {TEN_YEARS_OF_SECONDS}"),
        ("ALERTS__OPEN_HOURS", "inf", "alerts open_hours must be above 0 and at most 87,600 hours"),
        ("ALERTS__SINCE_HOURS", "1e308", "alerts since_hours must be 0 to 87,600 hours"),
        (
            "ALERTS__MAX_BACKOFF_SECONDS",
            "nan",
            f"max_backoff_seconds must be {TEN_YEARS_OF_SECONDS}",
        ),
    ],
)
def test_a_number_not_finite_or_out_of_its_range_is_one_line_before_any_request(
    account: Account, variable: str, value: str, message: str
) -> None:
    """nan, infinity and huge values pass `< 0`, then broke a sleep, a timeout or a date."""
    result = run_cli(account, "sync", env={f"SOURCES__RESEND_IMPORTS__{variable}": value})
    assert result.returncode == 1
    assert_one_line_error(result, message)
    assert f"got {float(value)}" in result.stderr
    assert account.requests() == 0
    assert not account.duckdb_path.exists()


@pytest.mark.parametrize(
    ("flag", "value", "expected"),
    [
        ("--alert-open-hours", "inf", "expected above 0 and at most 87,600 hours, got 'inf'"),
        ("--wait", "nan", f"expected {TEN_YEARS_OF_SECONDS}, got 'nan'"),
        ("--wait", "1e400", f"expected {TEN_YEARS_OF_SECONDS}, got '1e400'"),
    ],
)
def test_a_flags_number_follows_the_settings_rule(
    account: Account, flag: str, value: str, expected: str
) -> None:
    result = run_cli(account, "sync", flag, value)
    assert result.returncode == 2
    assert_one_line_error(result, f"argument {flag}: {expected}")
    assert account.requests() == 0


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ('{"memory_limit": "lots"}', "Memory must have a number"),
        ('{"threads": -1}', "Must have at least 1 thread"),
        ('{"no_such_setting": 1}', 'unrecognized configuration parameter "no_such_setting"'),
    ],
)
def test_a_duckdb_setting_duckdb_refuses_is_one_line_before_any_request(
    account: Account, config: str, words: str
) -> None:
    env = {"DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG": config}
    result = run_cli(account, "sync", env=env)
    assert result.returncode == 1
    assert_one_line_error(result, words)
    assert "DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG" in result.stderr
    assert account.requests() == 0
    assert not account.duckdb_path.exists()  # a first run's file removed, as for any failure


def test_duckdb_file_named_like_the_dataset_is_refused_up_front(account: Account) -> None:
    clash = str(account.workdir / "resend.duckdb")
    result = run_cli(account, "sync", env={"DESTINATION__DUCKDB__CREDENTIALS": clash})
    assert_one_line_error(result, "is named like the dataset 'resend'")
    assert account.requests() == 0
    renamed = run_cli(
        account, "sync", "--dataset", "resend_data", env={"DESTINATION__DUCKDB__CREDENTIALS": clash}
    )
    assert renamed.returncode == 0, renamed.stderr
    with duckdb.connect(clash, read_only=True) as con:
        count = con.execute("SELECT count(*) FROM resend_data.contact_imports").fetchone()
    assert count == (len(account.store),)


def test_plain_http_off_loopback_is_refused(account: Account) -> None:
    result = run_cli(account, "sync", env={"RESEND_API_URL": "http://api.resend.com"})
    assert_one_line_error(result, "is not HTTPS: the API key would travel in clear text")


def test_an_api_url_with_a_password_is_refused_without_showing_it(account: Account) -> None:
    url = account.url.replace("http://", "http://reader:s3cret@")
    result = run_cli(account, "sync", env={"RESEND_API_URL": url})
    assert_one_line_error(result, "holds a user name or password (user:password@)")
    assert "s3cret" not in result.stderr + result.stdout
    assert account.requests() == 0


def test_unknown_destination_is_a_usage_error(account: Account) -> None:
    result = run_cli(account, "sync", "--destination", "warehouse9000")
    assert result.returncode == 2
    assert_one_line_error(result, "resend-imports sync: error: unknown destination 'warehouse9000'")
    typo = run_cli(account, "report", "--destination", "postgress")
    assert typo.returncode == 2
    assert_one_line_error(typo, "unknown destination 'postgress': did you mean postgres?")
    assert account.requests() == 0


@pytest.mark.parametrize(
    ("args", "hint"),
    [
        (
            ["synk"],
            "invalid choice: 'synk' (choose from sync, report, sql, demo); did you mean sync?",
        ),
        (["sync", "--status", "complete"], "did you mean completed?"),
        (["report", "--format", "jsn"], "did you mean json?"),
        (["sync", "--ful-refresh"], "unrecognized arguments: --ful-refresh; did you mean"),
        (["report", "--day", "3"], "did you mean --days?"),
    ],
)
def test_typos_get_did_you_mean(account: Account, args: list[str], hint: str) -> None:
    result = run_cli(account, *args)
    assert result.returncode == 2
    assert_one_line_error(result, hint)


def test_log_level_in_any_case(account: Account) -> None:
    result = run_cli(account, "--log-level", "debug", "sync", "--log-level", "Info")
    assert result.returncode == 0, result.stderr
    wrong = run_cli(account, "--log-level", "verbose", "sync")
    assert wrong.returncode == 2 and "invalid choice: 'VERBOSE'" in wrong.stderr


def test_unknown_status_filter(account: Account) -> None:
    result = run_cli(account, "sync", "--status", "paused")
    assert result.returncode == 2
    assert "invalid choice: 'paused'" in result.stderr


# with `statements` the file is not held open (`DuckDB.held_open`): the state read refuses it
@pytest.mark.parametrize("statements", [None, '["SET threads = 1"]'])
def test_duckdb_file_locked_by_another_process(account: Account, statements: Optional[str]) -> None:
    env = {"DESTINATION__DUCKDB__CREDENTIALS__STATEMENTS": statements} if statements else None
    assert run_cli(account, "sync", env=env).returncode == 0
    account.store.advance(new=20, seconds=600)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('locked', flush=True);"
            " sys.stdin.read()",
            str(account.duckdb_path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    state_file = account.workdir / "dlt" / "pipelines" / "resend_imports" / "state.json"
    state_before = state_file.read_bytes()
    account.simulator.reset_stats()
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        result = run_cli(account, "sync", env=env)
        assert_one_line_error(result, f"the DuckDB file {account.duckdb_path} is locked")
        assert account.requests() == 0  # checked before paging the API for nothing
        assert state_file.read_bytes() == state_before
    finally:
        holder.communicate("", timeout=30)
    retry = run_cli(account, "sync")
    assert retry.returncode == 0, retry.stderr
    assert account.differences() == []


def test_retries_exhausted_is_one_line_and_the_next_run_recovers(account: Account) -> None:
    assert run_cli(account, "sync").returncode == 0
    account.store.advance(new=150, seconds=600)
    account.simulator.faults = FaultPlan(rate=1.0, kinds=("502_html",))
    fast = {
        "SOURCES__RESEND_IMPORTS__MAX_ATTEMPTS": "3",
        "SOURCES__RESEND_IMPORTS__INITIAL_BACKOFF_SECONDS": "0",
    }
    result = run_cli(account, "sync", env=fast)
    assert_one_line_error(result, "gave up after 3 attempts, last: http_error: Bad Gateway")
    missing = [d for d in account.differences() if d.startswith("missing import")]
    assert len(missing) == 150  # nothing of the failed run was committed
    account.simulator.faults = FaultPlan()
    assert run_cli(account, "sync").returncode == 0
    assert account.differences() == []


def test_bad_answer_is_one_line_and_leaves_the_table(account: Account) -> None:
    assert run_cli(account, "sync").returncode == 0
    account.store.advance(new=10, seconds=600)

    def corrupt(path: str, body: Any) -> Any:
        body["has_more"] = "maybe"
        return body

    account.simulator.rewrite = corrupt
    result = run_cli(account, "sync")
    assert_one_line_error(result, "the list response has no boolean 'has_more'")
    account.simulator.rewrite = None
    assert len(account.differences()) > 0  # the 10 new imports are not in yet
    assert run_cli(account, "sync").returncode == 0
    assert account.differences() == []


def test_malformed_records_are_set_aside_and_said_so(account: Account) -> None:
    assert run_cli(account, "sync").returncode == 0
    account.store.advance(new=10, seconds=600)
    new = [item["id"] for item in account.store.truth()[:10]]

    def corrupt(path: str, body: Any) -> Any:
        for item in body.get("data", [body]):
            if item["id"] in new:
                item["created_at"] = "yesterday"
        return body

    account.simulator.rewrite = corrupt
    result = run_cli(account, "sync")
    assert result.returncode == 0 and "Traceback" not in result.stderr
    assert "set aside 10 malformed records in resend.contact_imports_quarantine" in result.stdout
    assert result.stderr.count("unparseable created_at 'yesterday'") == 10
    account.simulator.rewrite = None
    assert run_cli(account, "sync").returncode == 0
    assert account.differences() == []


def test_demo_needs_no_key_and_checks_itself(tmp_path: Path) -> None:
    result = subprocess.run(
        [COMMAND, "demo", "--imports", "800", "--file", str(tmp_path / "demo.duckdb")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if not k.startswith("RESEND_")},
    )
    assert result.returncode == 0, result.stderr
    verdict = "each account's rows equal its simulator's imports: acme yes, globex yes"
    assert result.stdout.count(verdict) == 2
    with duckdb.connect(str(tmp_path / "demo.duckdb"), read_only=True) as con:
        counts = con.execute(
            "SELECT account, count(*) FROM resend.contact_imports GROUP BY account ORDER BY 1"
        ).fetchall()
    # acme 800 and globex a quarter as many, and the imports that arrive while time passes
    assert counts == [("acme", 805), ("globex", 202)]


def test_debug_logging_never_shows_the_key(account: Account) -> None:
    result = run_cli(account, "--log-level", "DEBUG", "sync")
    assert result.returncode == 0
    assert API_KEY not in result.stdout + result.stderr


def test_duckdb_out_of_memory_is_one_line_and_nothing_is_lost(make_account: Any) -> None:
    account: Account = make_account(imports=3000)
    starved = '{"memory_limit": "1MB", "threads": 1}'
    failed = run_cli(
        account, "sync", env={"DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG": starved}
    )
    assert_one_line_error(failed, "DuckDB ran out of memory while loading; raise memory_limit")
    assert failed.returncode == 1
    recovered = run_cli(account, "sync")  # the default settings
    assert recovered.returncode == 0, recovered.stderr
    assert account.differences() == []


def test_a_load_out_of_duckdb_memory_loads_again_with_twice_the_limit(make_account: Any) -> None:
    """What a load needs grows with what it merges; a cause that persists (every row of a
    complete listing differing) would otherwise fail every later run too."""
    account: Account = make_account(imports=3000)
    tight = '{"memory_limit": "4MB", "threads": 1, "preserve_insertion_order": false}'
    result = run_cli(
        account, "sync", env={"DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG": tight}
    )
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "WARNING" in line]
    assert len(warnings) == 1, result.stderr
    assert (
        "DuckDB ran out of memory while loading (memory_limit 4MB): loading again with 8MB"
        in (warnings[0])
    )
    assert "synced 3,000 contact imports" in result.stdout
    assert account.differences() == []


def test_the_destination_variable_the_dag_reads_names_the_cli_destination_too(
    make_account: Any,
) -> None:
    """One rule: `RESEND_IMPORTS_DESTINATION` names the destination of a run that names none,
    under Airflow and on the command line; `--destination` wins over it."""
    account: Account = make_account(imports=120, destination="postgres")
    result = run_cli(account, "sync", env={"RESEND_IMPORTS_DESTINATION": "postgres"})
    assert result.returncode == 0, result.stderr
    assert "PostgreSQL" in result.stdout
    assert account.differences() == []

    typo = run_cli(account, "sync", env={"RESEND_IMPORTS_DESTINATION": "postgress"})
    assert typo.returncode == 2
    assert "did you mean postgres?" in typo.stderr
    assert not (account.workdir / "imports.duckdb").exists()
