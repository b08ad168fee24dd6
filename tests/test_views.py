"""The views over `contact_imports` stay current: rebuilt after a load whenever they are missing
or older than the table, never blocked by a user's own view when a field arrives, never
rebuilt when current, and a failure to rebuild them after a committed load said truthfully."""

import re
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List

import pytest

from resend_imports.settings import TABLE_NAME
from resend_imports_pipelines.analytics.views import (
    DAILY_COLUMNS,
    DAILY_VIEW,
    ENRICHED_COLUMNS,
    ENRICHED_VIEW,
    ViewPlan,
    create_views,
    plan_views,
)
from resend_imports_pipelines.run import StaleViewsAfterLoadError
from resend_imports_pipelines.run import sync as run_sync_module

from .conftest import Account, assert_one_line_error, run_cli
from .scenarios import execute, synced

OLD_LAYOUT = (  # the enriched view of the versions before: `*` first, computed columns last
    "CREATE VIEW {dataset}.contact_imports_enriched AS SELECT *,"
    " EXTRACT(epoch FROM completed_at - created_at) AS duration_seconds,"
    " CAST(counts__failed AS double precision) / NULLIF(counts__total, 0) AS failure_rate,"
    " status IN ('completed', 'failed') AS is_terminal"
    " FROM {dataset}.contact_imports WHERE deleted_at IS NULL"
)


def with_field(name: str, value: Any) -> Callable[[str, Any], Any]:
    """A simulator rewrite: every import the API returns gains the field `name`."""

    def rewrite(path: str, body: Any) -> Any:
        for item in body.get("data", [body]):
            item[name] = value
        return body

    return rewrite


def columns_of(account: Account) -> Dict[str, List[str]]:
    """The columns of the table and of each view, in order, from the catalog."""
    rows = account.query(
        "SELECT table_name, column_name FROM information_schema.columns"
        " WHERE table_schema = 'resend' ORDER BY table_name, ordinal_position"
    )
    found: Dict[str, List[str]] = {}
    for relation, column in rows:
        found.setdefault(relation, []).append(column)
    return found


def assert_views_current(account: Account) -> None:
    columns = columns_of(account)
    assert columns[ENRICHED_VIEW] == [*ENRICHED_COLUMNS, *columns["contact_imports"]]
    assert columns[DAILY_VIEW] == list(DAILY_COLUMNS)


def mark_views(account: Account) -> None:
    """On DuckDB, a comment that only a CREATE OR REPLACE of the view takes away."""
    if account.destination_name == "duckdb":
        for view in (ENRICHED_VIEW, DAILY_VIEW):
            account.query(f"COMMENT ON VIEW {{dataset}}.{view} IS 'as it was'")


def view_versions(account: Account) -> Dict[str, Any]:
    """What changes whenever a view is created or replaced: the comment of `mark_views` on
    DuckDB (whose oids change at every opening of the file), the xmin of the view's rewrite
    rule on PostgreSQL."""
    if account.destination_name == "duckdb":
        sql = "SELECT view_name, comment FROM duckdb_views() WHERE schema_name = 'resend'"
    else:
        sql = (
            "SELECT c.relname, r.xmin::text FROM pg_rewrite r"
            " JOIN pg_class c ON c.oid = r.ev_class"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'resend'"
        )
    return dict(account.query(sql))


def cli_sync(account: Account) -> subprocess.CompletedProcess[str]:
    return run_cli(account, "sync", "--destination", account.destination_name)


def test_the_plan_adds_columns_in_place_and_drops_only_for_another_layout() -> None:
    table = ["id", "status", "created_at"]
    current = {
        TABLE_NAME: table,
        ENRICHED_VIEW: [*ENRICHED_COLUMNS, *table],
        DAILY_VIEW: list(DAILY_COLUMNS),
    }
    assert plan_views(current) == ViewPlan()
    assert plan_views({**current, TABLE_NAME: [*table, "weight"]}) == ViewPlan(
        creates=(ENRICHED_VIEW,)
    )
    assert plan_views({TABLE_NAME: table, ENRICHED_VIEW: current[ENRICHED_VIEW]}) == ViewPlan(
        creates=(DAILY_VIEW,)
    )
    older = {**current, TABLE_NAME: [*table, "weight"], ENRICHED_VIEW: [*table, "is_terminal"]}
    assert plan_views(older) == ViewPlan(
        drops=(DAILY_VIEW, ENRICHED_VIEW),
        creates=(ENRICHED_VIEW, DAILY_VIEW),
        reasons=(
            (
                ENRICHED_VIEW,
                "needs new columns (duration_seconds, failure_rate, weight)"
                " and this version's column layout",
            ),
            (DAILY_VIEW, f"is rebuilt with {ENRICHED_VIEW}"),
        ),
    )
    assert plan_views({}) == ViewPlan()  # no table yet: nothing to view


def test_a_new_field_reaches_the_enriched_view_past_a_users_own_view(
    make_account: Any, destination_name: str
) -> None:
    account, pipeline = synced(make_account(imports=200))
    assert_views_current(account)
    account.query("CREATE SCHEMA reports")
    account.query(
        "CREATE VIEW reports.my_view AS SELECT id, failure_rate"
        " FROM {dataset}.contact_imports_enriched"
    )
    account.simulator.rewrite = with_field("weight", 7)
    account.sync(pipeline, full_refresh=True)  # a new column, under a view of the user
    assert_views_current(account)
    assert columns_of(account)[ENRICHED_VIEW][-1] == "weight"  # added at the end, in place
    assert account.query(
        "SELECT count(*) FROM {dataset}.contact_imports_enriched WHERE weight = 7"
    ) == [(len(account.store),)]
    assert account.query("SELECT count(*) FROM reports.my_view") == [(len(account.store),)]


@pytest.mark.reliability
def test_a_users_view_on_an_older_layout_blocks_the_rebuild_in_one_line(
    make_account: Any,
) -> None:
    account: Account = make_account(imports=200, destination="postgres")
    assert cli_sync(account).returncode == 0
    account.query("DROP VIEW {dataset}.contact_imports_daily")
    account.query("DROP VIEW {dataset}.contact_imports_enriched")
    account.query(OLD_LAYOUT)  # as an earlier version left it
    account.query("CREATE SCHEMA reports")
    account.query(
        "CREATE VIEW reports.my_view AS SELECT id, failure_rate"
        " FROM {dataset}.contact_imports_enriched"
    )
    account.store.advance(new=10, seconds=600)
    blocked = cli_sync(account)
    assert blocked.returncode == 1
    read = re.match(r"synced (\d+) contact imports into resend.contact_imports ", blocked.stdout)
    assert read is not None, blocked.stdout
    assert_one_line_error(
        blocked,
        f"error: the load is done ({read[1]} contact imports read into resend.contact_imports), but"
        " the views were not rebuilt: view reports.my_view depends on"
        " resend.contact_imports_enriched, which needs this version's column layout:"
        " drop it, run again, recreate it",
    )
    assert "nothing is lost" not in blocked.stderr
    assert account.differences() == []  # the table loaded
    assert DAILY_VIEW not in columns_of(account)  # nothing half-done: the old view stands

    account.query("DROP VIEW reports.my_view")
    again = cli_sync(account)
    assert again.returncode == 0, again.stderr
    assert_views_current(account)


def test_views_dropped_by_a_person_come_back_at_the_next_run(
    make_account: Any, destination_name: str
) -> None:
    account, pipeline = synced(make_account(imports=200))
    account.query("DROP VIEW {dataset}.contact_imports_daily")
    account.sync(pipeline)  # nothing changed in the table
    assert_views_current(account)
    account.query("DROP VIEW {dataset}.contact_imports_daily")
    account.query("DROP VIEW {dataset}.contact_imports_enriched")
    account.sync(pipeline)
    assert_views_current(account)


@pytest.mark.reliability
def test_a_view_name_taken_by_a_table_fails_truthfully_and_the_next_run_creates_the_views(
    make_account: Any, destination_name: str
) -> None:
    account: Account = make_account(imports=200)
    assert cli_sync(account).returncode == 0
    account.query("DROP VIEW {dataset}.contact_imports_daily")
    account.query("DROP VIEW {dataset}.contact_imports_enriched")
    account.query("CREATE TABLE {dataset}.contact_imports_enriched (note text)")
    account.store.advance(new=10, seconds=600)
    failed = cli_sync(account)
    assert failed.returncode == 1
    assert failed.stdout.startswith("synced 100 contact imports into resend.contact_imports")
    assert_one_line_error(
        failed,
        "error: the load is done (100 contact imports read into resend.contact_imports), but"
        " the views were not rebuilt (",
    )
    assert "contact_imports_enriched" in failed.stderr  # the database's words name it
    assert failed.stderr.rstrip().endswith("; the next run tries again")
    assert "nothing is lost" not in failed.stderr
    assert account.differences() == []

    account.query("DROP TABLE {dataset}.contact_imports_enriched")
    again = cli_sync(account)
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("nothing changed in resend.contact_imports")
    assert_views_current(account)


@contextmanager
def reader_holding(path: Path) -> Iterator[None]:
    """Another process with the DuckDB file open read-only (a notebook, a BI tool)."""
    code = (
        "import duckdb, sys; connection = duckdb.connect(sys.argv[1], read_only=True);"
        " print('open', flush=True); sys.stdin.read()"
    )
    reader = subprocess.Popen(
        [sys.executable, "-c", code, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert reader.stdout is not None and reader.stdout.readline() == "open\n"
        yield
    finally:
        assert reader.stdin is not None
        reader.stdin.close()
        reader.wait(timeout=30)


def test_a_reader_holding_the_file_after_the_load_fails_the_views_truthfully_once(
    account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a reader opens the file in the moment between the committed load and the views, which
    # no outside process can time: the view step is wrapped to start the real reader then
    calls: List[int] = []

    def reader_arrives_after_the_load(pipeline: Any) -> Any:
        calls.append(1)
        if len(calls) > 1:
            return create_views(pipeline)
        with reader_holding(account.duckdb_path):
            return create_views(pipeline)

    monkeypatch.setattr(run_sync_module, "create_views", reader_arrives_after_the_load)
    pipeline = account.pipeline()
    with pytest.raises(StaleViewsAfterLoadError) as raised:
        account.sync(pipeline)
    assert raised.value.summary.new == len(account.store)  # the summary of the load
    message = str(raised.value)
    assert message.startswith(
        f"the load is done ({len(account.store)} contact imports read into"
        " resend.contact_imports), but the views were not rebuilt ("
    )
    assert message.endswith(
        f" holds the DuckDB file {account.duckdb_path}); the next run tries again"
    )
    assert "\n" not in message
    assert "nothing is lost" not in message
    assert account.differences() == []
    assert ENRICHED_VIEW not in columns_of(account)

    account.sync(pipeline)  # nothing new: the views are created all the same
    assert_views_current(account)


def test_a_run_whose_views_are_current_runs_no_ddl(
    make_account: Any, destination_name: str
) -> None:
    account, pipeline = synced(make_account(imports=200))
    mark_views(account)
    created = view_versions(account)
    assert created.keys() == {ENRICHED_VIEW, DAILY_VIEW}
    account.store.advance(new=20, seconds=600)
    account.sync(pipeline)  # a load, no new column
    account.sync(pipeline, full_refresh=True)
    assert view_versions(account) == created
    account.query("DROP VIEW {dataset}.contact_imports_daily")
    account.sync(pipeline)
    recreated = view_versions(account)
    assert recreated[DAILY_VIEW] != created[DAILY_VIEW]  # the check can fail
    assert recreated[ENRICHED_VIEW] == created[ENRICHED_VIEW]  # only what was missing


@pytest.mark.parametrize("destination_name", ["postgres"])
def test_the_views_read_the_table_created_again_after_a_rename(
    make_account: Any, destination_name: str
) -> None:
    account, pipeline = synced(make_account(imports=300))
    execute(account, "ALTER TABLE resend.contact_imports RENAME TO contact_imports_backup")
    account.store.advance(new=7, seconds=600)
    assert account.sync(pipeline).mode == "repair"
    assert account.differences() == []
    table = account.query("SELECT count(*) FROM {dataset}.contact_imports")
    view = account.query("SELECT count(*) FROM {dataset}.contact_imports_enriched")
    assert view == table  # observed: 300 in the view, 307 in the table
