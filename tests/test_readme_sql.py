"""Every query of the README's `sql` blocks, run as pasted with `resend-imports sql` (as the
README says to) on DuckDB and on PostgreSQL, before and after the first alert."""

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, List

import pytest

from resend_imports_pipelines.analytics.sql import run_query

from .conftest import Account, run_cli

README = Path(__file__).resolve().parents[1] / "README.md"
QUEUED_QUERY = 4  # how long imports waited in the queue


def readme_queries() -> List[str]:
    """Each statement of each `sql` block, with the comment that names it."""
    blocks = re.findall(r"^```sql\n(.*?)^```", README.read_text(), flags=re.M | re.S)
    statements = [re.split(r";\s*$", block, flags=re.M) for block in blocks]
    return [query.strip() for block in statements for query in block if query.strip()]


def run_every_query(account: Account) -> List[List[str]]:
    """The printed lines of every README query, each run as a user would."""
    where = ["--destination", "postgres"] if account.postgres else []
    printed = []
    for query in readme_queries():
        result = run_cli(account, "sql", *where, query)
        assert result.returncode == 0, f"{query}\n---\n{result.stderr}"
        lines = result.stdout.splitlines()
        assert re.fullmatch(r"\(\d+ rows?\)", lines[-1]), result.stdout
        printed.append(lines)
    return printed


def rows(printed: List[str]) -> int:
    return int(printed[-1].strip("()").split()[0])


def test_the_readme_has_the_queries_this_test_knows() -> None:
    queries = readme_queries()
    assert [int(q.split(".")[0].removeprefix("-- ")) for q in queries] == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize(
    "destination", ["duckdb", pytest.param("postgres", marks=pytest.mark.reliability)]
)
def test_every_readme_query_runs_before_and_after_the_first_alert(
    make_account: Any, destination: str
) -> None:
    now = datetime.now(UTC)
    account: Account = make_account(imports=400, stuck=2, history_end=now, destination=destination)
    waiting = account.store.insert(now - timedelta(seconds=90))  # queued, starts with time
    pipeline = account.pipeline()
    first = account.sync(pipeline, alert_settings={"enabled": False})
    assert first.alerts_raised == 0
    before = run_every_query(account)
    assert rows(before[5]) == 0  # the alerts of the last 7 days: none yet, and no error

    account.store.advance(new=10, seconds=600)
    second = account.sync(pipeline)
    assert second.alerts_raised > 0
    after = run_every_query(account)
    assert rows(after[5]) > 0

    # query 4 after time passed: a bound on the time in the queue, from creation on
    queued = run_query(pipeline, readme_queries()[QUEUED_QUERY - 1])
    assert queued.columns == ("id", "created_at", "queued_at_least", "queued_at_most")
    bounds = {row[0]: row[2:] for row in queued.rows}
    least, most = bounds[waiting]
    assert timedelta(seconds=90) <= least <= most <= datetime.now(UTC) - now + timedelta(seconds=91)
