"""`resend-imports sql`: one query on the destination the other commands resolve, read-only,
printed as a table; every failure one line."""

from collections import Counter
from typing import Any, List

import duckdb
import pytest

from .conftest import Account, assert_one_line_error, run_cli

COUNT = "SELECT status, count(*) AS imports FROM resend.contact_imports GROUP BY status"


def where(account: Account) -> List[str]:
    return ["--destination", "postgres"] if account.postgres else []


@pytest.mark.parametrize("destination", ["duckdb", "postgres"])
def test_it_prints_the_rows_and_writes_nothing(make_account: Any, destination: str) -> None:
    account: Account = make_account(imports=120, destination=destination)
    account.sync()
    truth = account.store.truth()
    printed = run_cli(account, "sql", *where(account), COUNT + " ORDER BY status")
    assert printed.returncode == 0, printed.stderr
    lines = printed.stdout.splitlines()
    assert lines[0].split() == ["status", "imports"] and set(lines[1]) == {"-", " "}
    counted = {line.split()[0]: int(line.split()[1]) for line in lines[2:-1]}
    assert counted == Counter(i["status"] for i in truth)
    assert lines[-1] == f"({len(counted)} rows)"

    for statement in (
        "DELETE FROM resend.contact_imports",
        "CREATE TABLE resend.mine AS SELECT 1 AS one",
    ):
        refused = run_cli(account, "sql", *where(account), statement)
        assert_one_line_error(refused, "read-only")
    assert account.differences() == []
    assert account.query("SELECT count(*) FROM {dataset}.contact_imports") == [(120,)]


@pytest.mark.parametrize("destination", ["duckdb", "postgres"])
def test_a_query_the_database_refuses_is_one_line(make_account: Any, destination: str) -> None:
    account: Account = make_account(imports=30, destination=destination)
    account.sync()
    result = run_cli(account, "sql", *where(account), "SELECT nope FROM resend.contact_imports")
    assert result.returncode == 1
    assert_one_line_error(result, "nope")
    assert "PostgreSQL" in result.stderr if account.postgres else "DuckDB file" in result.stderr


def test_it_reads_beside_another_reader_and_never_creates_a_file(account: Account) -> None:
    account.sync()
    with duckdb.connect(str(account.duckdb_path), read_only=True):
        beside = run_cli(account, "sql", "SELECT count(*) AS n FROM resend.contact_imports")
    assert beside.returncode == 0, beside.stderr
    assert beside.stdout.splitlines()[2].strip() == str(len(account.store))
    typo = account.workdir / "imprts.duckdb"
    missing = run_cli(account, "sql", "--duckdb", str(typo), COUNT)
    assert_one_line_error(missing, f"no DuckDB file at {typo}")
    assert not typo.exists()


def test_other_destinations_are_refused_in_one_line(account: Account) -> None:
    result = run_cli(account, "sql", "--destination", "bigquery", COUNT)
    assert_one_line_error(result, "sql reads DuckDB and PostgreSQL only")


def test_a_query_without_a_statement_is_one_line(account: Account) -> None:
    """DuckDB runs such a query as nothing and gives no result, which dlt fails on."""
    account.sync()
    for query in ("", ";", "-- a comment", " /* one */ ;; "):
        result = run_cli(account, "sql", query)
        assert result.returncode == 1, query
        assert_one_line_error(result, "the query holds no statement")
