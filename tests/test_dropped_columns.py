"""A column a person dropped from the tables: one the rows held data in comes back filled by
listing every import in the same run (also after a filtered run); one every row needs (the
key rows are matched by) stops every run before any request in one line that says what to
do; `account` comes back from the other tables in a table of several accounts."""

from typing import Any, List

import pytest

from resend_imports_pipelines.failures import explain

from .conftest import API_KEY, Account, assert_one_line_error, run_cli
from .scenarios import drop_views, execute, synced
from .test_accounts import KEYS, each_equal_to_its_truth, rows_by_account, with_accounts


def lines_about(caplog: pytest.LogCaptureFixture, text: str) -> List[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


def deleted_rows(account: Account) -> int:
    rows = account.query(
        "SELECT count(*) FROM {dataset}.contact_imports WHERE deleted_at IS NOT NULL"
    )
    return int(rows[0][0])


@pytest.mark.parametrize("column", ["deleted_at", "status", "created_at", "object"])
def test_a_column_the_rows_held_data_in_is_filled_again_in_the_same_run(
    make_account: Any, destination_name: str, column: str, caplog: pytest.LogCaptureFixture
) -> None:
    # before: added again empty, and every later run said "nothing changed" (imports marked
    # deleted came back as live rows, statuses stayed NULL)
    account, pipeline = synced(make_account(imports=300, stuck=0))
    for item in account.store.truth()[100:103]:
        account.store.delete(item["id"])
    assert account.sync(pipeline, full_refresh=True).deleted == 3
    drop_views(account)
    execute(account, f"ALTER TABLE resend.contact_imports DROP COLUMN {column}")
    account.store.advance(new=2, seconds=600)
    caplog.clear()

    summary = account.sync(pipeline)

    assert summary.mode == "repair"
    told = lines_about(caplog, f"lacked {column}")
    assert len(told) == 1 and "\n" not in told[0], told
    assert told[0].endswith("added again empty: listing every import to repair it")
    assert lines_about(caplog, "added again") == told  # the one WARNING
    assert account.differences() == []
    assert deleted_rows(account) == 3  # the imports Resend deleted are marked deleted again
    held = account.query(
        "SELECT count(*) FROM {dataset}.contact_imports"
        " WHERE object = 'contact_import' AND deleted_at IS NULL"
    )
    assert held[0][0] == len(account.store)  # every import Resend has holds its values again
    account.store.advance(new=2, seconds=600)
    assert account.sync(pipeline).mode == "incremental"  # repaired: back to normal
    assert account.differences() == []


def test_a_filtered_run_leaves_the_repair_of_a_dropped_column_to_the_next_run(
    make_account: Any, caplog: pytest.LogCaptureFixture
) -> None:
    account, pipeline = synced(make_account(imports=300, stuck=0))
    execute(account, "ALTER TABLE resend.contact_imports DROP COLUMN status")

    assert account.sync(pipeline, status="failed").mode == "filtered"
    told = lines_about(caplog, "lacked status")
    assert len(told) == 1 and "a filtered run lists too little to repair it" in told[0]

    account.store.advance(new=3, seconds=600)
    assert account.sync(pipeline).mode == "repair"
    assert account.differences() == []
    assert account.sync(pipeline).mode == "incremental"


KEY_COLUMNS = [("contact_imports", "id"), ("contact_import_status_history", "observation_key")]


@pytest.mark.parametrize("table, column", KEY_COLUMNS, ids=[c for _, c in KEY_COLUMNS])
def test_a_key_column_a_person_dropped_stops_the_run_in_one_line_until_the_table_is_dropped(
    make_account: Any, destination_name: str, table: str, column: str
) -> None:
    # before: "cannot read the tables ... (NOT NULL constraint failed) ... run again", on
    # every run, --full-refresh included, and new imports stopped loading
    account, pipeline = synced(make_account(imports=300))
    drop_views(account)
    execute(account, f"ALTER TABLE resend.{table} DROP COLUMN {column}")
    account.store.advance(new=5, seconds=600)
    for full_refresh in (False, True):
        with pytest.raises(Exception) as failure:
            account.sync(pipeline, full_refresh=full_refresh)
        message = explain(failure.value)
        assert message is not None and "\n" not in message
        assert message.startswith(f"resend.{table} lacks {column} (dropped by a person?)")
        assert "drop the table: the next run creates it" in message and "run again" not in message
        assert account.requests() == 0  # stopped before any request

    execute(account, f"DROP TABLE resend.{table}")  # what the line says a person can do
    summary = account.sync(pipeline)
    assert summary.mode == ("repair" if table == "contact_imports" else "incremental")
    assert account.differences() == []
    account.store.advance(new=2, seconds=600)
    assert account.sync(pipeline).mode == "incremental"
    assert account.differences() == []


def test_a_dropped_id_ends_the_command_in_one_line_with_exit_1(account: Account) -> None:
    assert run_cli(account, "sync").returncode == 0
    execute(account, "ALTER TABLE resend.contact_imports DROP COLUMN id")
    result = run_cli(account, "sync")
    assert_one_line_error(result, "resend.contact_imports lacks id (dropped by a person?)")
    assert result.returncode == 1


def several_accounts(make_account: Any) -> tuple[Account, Any, dict[str, str]]:
    account = with_accounts(make_account(imports=300), {"globex": 250})
    keys = {"acme": API_KEY, "globex": KEYS["globex"]}
    pipeline = account.pipeline()
    account.sync(pipeline, accounts=keys)
    drop_views(account)
    return account, pipeline, keys


def test_the_account_column_of_several_accounts_comes_back_from_the_history(
    make_account: Any, destination_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    # before: every row became `default`, each account then repaired: the table ended with
    # a live `default` copy of every import (the views counted each twice)
    account, pipeline, keys = several_accounts(make_account)
    execute(account, "ALTER TABLE resend.contact_imports DROP COLUMN account")
    caplog.clear()

    summary = account.sync(pipeline, accounts=keys)

    assert rows_by_account(account) == {"acme": 300, "globex": 250}
    each_equal_to_its_truth(account, list(keys))
    assert {r.mode for r in summary.per_account()} == {"incremental"}
    told = lines_about(caplog, "lacked account")
    assert len(told) == 1 and "each row given the account its import has in" in told[0]


def test_the_account_column_that_some_rows_cannot_get_back_stops_the_run_in_one_line(
    make_account: Any,
) -> None:
    account, pipeline, keys = several_accounts(make_account)
    execute(
        account,
        "DELETE FROM resend.contact_import_status_history WHERE import_id IN (SELECT id FROM"
        " resend.contact_imports WHERE account = 'globex' ORDER BY id LIMIT 2)",
        "ALTER TABLE resend.contact_imports DROP COLUMN account",
    )
    with pytest.raises(Exception) as failure:
        account.sync(pipeline, accounts=keys)
    message = explain(failure.value)
    assert message is not None and "\n" not in message
    assert "lacks account (dropped by a person?) and holds the imports of the accounts" in message
    assert "2 of its rows" in message and "drop the table" in message
    assert account.requests() == 0

    execute(account, "DROP TABLE resend.contact_imports")
    summary = account.sync(pipeline, accounts=keys)
    assert {r.mode for r in summary.per_account()} == {"repair"}
    assert rows_by_account(account) == {"acme": 300, "globex": 250}
    each_equal_to_its_truth(account, list(keys))


def columns_of_the_table(account: Account) -> List[str]:
    """The columns of `contact_imports` as the catalog spells them."""
    rows = account.query(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'resend'"
        " AND table_name = 'contact_imports'"
    )
    return [row[0] for row in rows]


MIXED_CASE = [("counts__total", "Counts__Total"), ("status", "Status")]


@pytest.mark.parametrize("column, spelled", MIXED_CASE, ids=[c for c, _ in MIXED_CASE])
def test_a_column_renamed_to_a_mixed_case_spelling_is_renamed_back_on_postgres(
    make_account: Any, postgres: Any, column: str, spelled: str, caplog: pytest.LogCaptureFixture
) -> None:
    # before: "cannot read the table ... (column "counts__total" does not exist) ... run
    # again" on every run, --full-refresh included: `"Counts__Total"` counted as the column.
    # Added again beside it, dlt fails on every later change of its schema (it compares
    # column names regardless of case): renamed back, the rows keep their values
    account, pipeline = synced(make_account(imports=300, stuck=0, destination="postgres"))
    execute(account, f'ALTER TABLE resend.contact_imports RENAME {column} TO "{spelled}"')
    account.store.advance(new=2, seconds=600)
    caplog.clear()

    summary = account.sync(pipeline)

    told = lines_about(caplog, "renamed back")
    assert len(told) == 1 and "\n" not in told[0], told
    assert told[0].startswith(f'resend.contact_imports."{spelled}" renamed back to the lower')
    assert summary.mode == "incremental"  # nothing was lost: nothing to list again
    assert account.differences() == []
    held = columns_of_the_table(account)
    assert column in held and spelled not in held
    account.store.advance(new=2, seconds=600)
    assert account.sync(pipeline, full_refresh=True).mode == "full"
    assert account.differences() == []


def test_a_column_renamed_to_a_mixed_case_spelling_on_duckdb_is_the_same_column(
    make_account: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # DuckDB's identifiers ignore case: `"Counts__Total"` is `counts__total`, nothing lacks
    account, pipeline = synced(make_account(imports=300, stuck=0))
    execute(account, 'ALTER TABLE resend.contact_imports RENAME counts__total TO "Counts__Total"')
    account.store.advance(new=2, seconds=600)
    caplog.clear()

    assert account.sync(pipeline).mode == "incremental"
    assert lines_about(caplog, "lacked") == []
    assert account.differences() == []
    assert account.sync(pipeline, full_refresh=True).mode == "full"
    assert account.differences() == []
