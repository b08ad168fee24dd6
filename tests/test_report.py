"""`resend-imports report`: it only reads (DuckDB read-only, beside other readers; PostgreSQL
in read-only sessions), fails in lines of its own, bounds `--days`, and prints counts,
durations, rates and bars the same way everywhere."""

import hashlib
import re
from pathlib import Path
from typing import Any

import duckdb
import pytest

from resend_imports_pipelines.analytics.render import BAR_WIDTH, FULL, bar
from resend_imports_pipelines.destinations import target_of
from resend_imports_pipelines.formatting import duration

from .conftest import Account, assert_one_line_error, run_cli
from .throwaway_postgres import ThrowawayPostgres


def fingerprint(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def daily_rows(report: str) -> list[list[str]]:
    """The rows of the per-day table, split on runs of spaces (a bar is one cell)."""
    table = report.split("Contact imports per day\n", 1)[1].split("\n\n", 1)[0]
    return [re.split(r"\s{2,}", line.strip()) for line in table.splitlines()[2:]]


def test_report_runs_beside_a_read_only_reader_and_changes_nothing(account: Account) -> None:
    account.sync()
    before = fingerprint(account.duckdb_path)
    with duckdb.connect(str(account.duckdb_path), read_only=True) as reader:
        result = run_cli(account, "report")
        assert reader.execute("SELECT count(*) FROM resend.contact_imports").fetchone() == (
            len(account.store),
        )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Contact imports per day")
    assert fingerprint(account.duckdb_path) == before


def test_report_beside_a_writer_says_so_in_its_own_words(account: Account) -> None:
    account.sync()
    with duckdb.connect(str(account.duckdb_path)):  # this process writes the file
        result = run_cli(account, "report")
    assert_one_line_error(
        result,
        f"the DuckDB file {account.duckdb_path} is open for writing in another process (PID",
    )
    assert "run the report again when it has finished" in result.stderr
    assert "next run" not in result.stderr and "extracted" not in result.stderr  # a sync's


def test_report_creates_no_views_but_says_to_sync(account: Account) -> None:
    account.sync()
    with duckdb.connect(str(account.duckdb_path)) as con:
        con.execute("DROP VIEW resend.contact_imports_daily")
        con.execute("DROP VIEW resend.contact_imports_enriched")
    result = run_cli(account, "report")
    assert_one_line_error(result, "run `resend-imports sync` once, it creates them")
    with duckdb.connect(str(account.duckdb_path), read_only=True) as con:
        views = con.execute("SELECT count(*) FROM duckdb_views() WHERE NOT internal").fetchone()
    assert views == (0,)
    assert run_cli(account, "sync").returncode == 0
    assert run_cli(account, "report").returncode == 0


@pytest.mark.parametrize("days", ["0", "3651", "999999", "-1", "two"])
def test_days_is_bounded_on_the_command_line(account: Account, days: str) -> None:
    result = run_cli(account, "report", "--days", days)
    assert result.returncode == 2
    assert_one_line_error(
        result, f"argument --days: expected a whole number from 1 to 3650, got '{days}'"
    )


def test_the_longest_period_reads(account: Account) -> None:
    account.sync()
    result = run_cli(account, "report", "--days", "3650", "--format", "json")
    assert result.returncode == 0, result.stderr


def test_numbers_durations_and_bars_read_the_same_everywhere(make_account: Any) -> None:
    account: Account = make_account(imports=1500)
    account.sync()
    result = run_cli(account, "report", "--wide")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert re.search(r"-+ imports -+  -+ contacts in the files -+   duration$", lines[1])
    assert lines[2].split() == [
        "day", "(UTC)", "all", "completed", "failed", "open", "all", "created", "updated",
        "skipped", "failed", "failed", "%", "median",
    ]  # fmt: skip
    rows = daily_rows(result.stdout)
    assert rows
    for row in rows:
        day, *numbers = row
        assert re.fullmatch(r"\d{4}-\d\d-\d\d", day)
        counts = [cell for cell in numbers if re.fullmatch(r"[\d,]+", cell)]
        assert all(re.fullmatch(r"\d{1,3}(,\d{3})*", cell) for cell in counts), row
        assert any(re.fullmatch(r"\d+\.\d%", cell) for cell in numbers), row
        median = numbers[-1]
        assert re.fullmatch(r"\d+s|\d+m\d\ds|\d+h\d\dm|\d+d\d\dh", median), row
    assert any(cell == FULL * BAR_WIDTH for row in rows for cell in row)  # the busiest day
    busiest = max(int(row[1].replace(",", "")) for row in rows)
    assert busiest >= 100 and any(f"{busiest:,}" in row for row in rows)
    worst = result.stdout.split("Worst finished imports by failure rate\n", 1)[1].split("\n\n")[0]
    for line in worst.splitlines()[2:]:
        *_, total, failed, rate = line.split()
        assert re.fullmatch(r"\d{1,3}(,\d{3})*", total) and re.fullmatch(r"\d+\.\d%", rate)
        assert re.fullmatch(r"\d{1,3}(,\d{3})*", failed)


def test_durations_and_bars() -> None:
    assert [duration(s) for s in (0.4, 42, 253, 4213, 3 * 86400 + 4 * 3600 + 59)] == [
        "0s",
        "42s",
        "4m13s",
        "1h10m",
        "3d04h",
    ]
    assert bar(10, 10) == FULL * BAR_WIDTH
    assert bar(5, 10) == FULL * (BAR_WIDTH // 2)
    assert bar(0.001, 10) == "▏"  # above 0 shows
    assert bar(0, 10) == "" and bar(3, 0) == ""


def test_a_postgresql_report_reads_in_read_only_sessions(
    make_account: Any, postgres: ThrowawayPostgres
) -> None:
    account: Account = make_account(destination="postgres")
    account.sync()
    result = run_cli(account, "report", "--destination", "postgres")
    assert result.returncode == 0, result.stderr
    pipeline = account.pipeline()
    target = target_of(pipeline)
    pipeline.destination = target.kind.read_only(target)
    with pipeline.sql_client() as client:
        assert client.execute_sql("SELECT count(*) FROM contact_imports") == [(len(account.store),)]
        with pytest.raises(Exception, match="read-only transaction"):
            client.execute_sql("CREATE TABLE resend.written_by_a_report (a int)")
