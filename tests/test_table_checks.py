"""A run checks the table before it trusts its state: a table a person dropped, renamed or
emptied is noticed, said in one line and repaired in the same run; a table that cannot be read
for a moment is never taken for a destination without SQL."""

import subprocess
import sys
from contextlib import closing
from datetime import UTC, datetime
from typing import Any, Callable, Dict, List

import pytest

from resend_imports_pipelines.failures import explain

from .conftest import Account
from .scenarios import (
    alert_count,
    corrupting,
    drop_views,
    execute,
    read_malformed,
    resource_state,
    synced,
)


def history_count(account: Account) -> int:
    return int(account.query("SELECT count(*) FROM {dataset}.contact_import_status_history")[0][0])


PERSON_DOES = {
    "drop": ["DROP TABLE resend.contact_imports"],
    "delete every row": ["DELETE FROM resend.contact_imports"],
    "rename": ["ALTER TABLE resend.contact_imports RENAME TO contact_imports_old"],
    "delete a few rows": [
        "DELETE FROM resend.contact_imports WHERE id IN"
        " (SELECT id FROM resend.contact_imports ORDER BY created_at LIMIT 3)"
    ],
}


@pytest.mark.parametrize("change", sorted(PERSON_DOES))
def test_a_table_a_person_changed_is_repaired_by_the_next_run(
    make_account: Any,
    destination_name: str,
    change: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    account, pipeline = synced(make_account(imports=605, stuck=0))
    account.store.advance(new=5, seconds=600)
    account.sync(pipeline)
    live = len(account.store)
    execute(account, "DROP VIEW IF EXISTS resend.contact_imports_daily")
    execute(account, "DROP VIEW IF EXISTS resend.contact_imports_enriched")
    execute(account, *PERSON_DOES[change])
    account.store.advance(new=3, seconds=600)
    summary = account.sync(pipeline)
    assert summary.mode == "repair"
    assert account.differences() == []
    missing = 3 if change == "delete a few rows" else live
    assert summary.new == 3 + missing  # the inserted rows are counted as such
    warnings = [r.message for r in caplog.records if "listing every import to repair" in r.message]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    account.store.advance(new=2, seconds=600)
    assert account.sync(pipeline).mode == "incremental"  # repaired: back to normal
    assert account.differences() == []


@pytest.mark.parametrize("change", sorted(PERSON_DOES))
def test_a_filtered_run_after_a_person_changed_the_table_leaves_the_repair_to_the_next_run(
    make_account: Any,
    destination_name: str,
    change: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # a filtered run lists too little to repair; once it counted the table as it found it,
    # no later run noticed the rows a person had deleted
    account, pipeline = synced(make_account(imports=605, stuck=0))
    execute(account, "DROP VIEW IF EXISTS resend.contact_imports_daily")
    execute(account, "DROP VIEW IF EXISTS resend.contact_imports_enriched")
    execute(account, *PERSON_DOES[change])
    filtered = account.sync(pipeline, status="failed")
    assert filtered.mode == "filtered"
    told = [r.message for r in caplog.records if "a filtered run lists too little" in r.message]
    assert len(told) == 1 and "\n" not in told[0]
    account.store.advance(new=3, seconds=600)
    assert account.sync(pipeline).mode == "repair"
    assert account.differences() == []
    account.store.advance(new=2, seconds=600)
    assert account.sync(pipeline).mode == "incremental"  # repaired: back to normal
    assert account.differences() == []


def test_a_dropped_history_table_is_created_again(make_account: Any, destination_name: str) -> None:
    account, pipeline = synced(make_account(imports=300))
    execute(account, "DROP TABLE resend.contact_import_status_history")
    account.store.advance(new=10, seconds=600)
    summary = account.sync(pipeline)
    assert summary.mode == "incremental"
    assert history_count(account) >= 10  # the new imports' rows, in a table created again
    assert account.differences() == []


HOLD_READ_ONLY = """
import sys, time, duckdb
connection = duckdb.connect(sys.argv[1], read_only=True)
print("holding", flush=True)
time.sleep(float(sys.argv[2]))
connection.close()
"""


def hold_file(path: str, seconds: float) -> "subprocess.Popen[str]":
    """A reader in another process, holding the DuckDB file read-only for `seconds`."""
    reader = subprocess.Popen(
        [sys.executable, "-c", HOLD_READ_ONLY, path, str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert reader.stdout is not None and reader.stdout.readline().strip() == "holding"
    return reader


def test_a_reader_holding_the_file_fails_the_run_in_one_line_and_nothing_is_recorded(
    account: Account,
) -> None:
    pipeline = account.pipeline()
    account.sync(pipeline)
    state_before = resource_state(pipeline)
    gone = account.store.truth()[-1]["id"]
    account.store.delete(gone)
    reader = hold_file(str(account.duckdb_path), 30)
    try:
        with pytest.raises(Exception) as failure:
            account.sync(account.pipeline(), full_refresh=True)
    finally:
        reader.kill()
        reader.wait()
    message = explain(failure.value)
    assert message is not None and "\n" not in message and "locked by another process" in message
    assert "deletions are not reconciled" not in message
    assert resource_state(account.pipeline()) == state_before  # the listing is not recorded
    assert account.sync(account.pipeline()).mode == "incremental"
    assert account.sync(account.pipeline(), full_refresh=True).deleted == 1
    assert account.differences() == []


def test_a_connection_lost_during_a_complete_listing_is_opened_again(
    make_account: Any, postgres: Any
) -> None:
    """The run's own connection is cut (a server restart, a proxy timeout) while it pages:
    its next read reconnects and the complete listing still reconciles the table."""
    account, pipeline = synced(make_account(imports=300, destination="postgres"))
    gone = account.store.truth()[-1]["id"]
    account.store.delete(gone)
    cut: List[int] = []

    def cut_connections_once(path: str, body: Any) -> Any:
        if not cut:
            with closing(postgres.admin()) as server, server.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE"
                    " usename = 'loader' AND application_name NOT LIKE 'resend-imports%%'"
                )
                cut.append(cursor.rowcount)
        return body

    account.simulator.rewrite = cut_connections_once
    summary = account.sync(pipeline, full_refresh=True)
    assert cut and cut[0] >= 1  # the run's reader was cut
    assert summary.deleted == 1
    assert account.differences() == []


def _every_row_deleted(account: Account, pipeline: Any) -> None:
    drop_views(account)
    execute(account, "DELETE FROM resend.contact_imports")
    account.sync(pipeline)  # a repair


def _a_status_edited(account: Account, pipeline: Any) -> None:
    failed = next(i["id"] for i in account.store.truth()[100:] if i["status"] == "failed")
    execute(
        account, f"UPDATE resend.contact_imports SET status = 'completed' WHERE id = '{failed}'"
    )
    account.sync(pipeline, full_refresh=True)  # the complete listing puts it right


@pytest.mark.parametrize(
    "person", [_every_row_deleted, _a_status_edited], ids=["rows deleted", "status edited"]
)
def test_putting_the_table_right_raises_no_alert_for_old_failures(
    make_account: Any, person: Callable[[Account, Any], None]
) -> None:
    account: Account = make_account(imports=300)  # history ends weeks before the run's clock
    pipeline = account.pipeline()
    account.sync(pipeline)
    assert alert_count(account) == 0  # the first run: nothing older than since_hours
    person(account, pipeline)
    assert account.differences() == []
    assert alert_count(account) == 0  # observed: 154 (rows deleted), 1 (status edited)


def test_rows_a_person_deleted_after_a_filtered_run_are_put_back(make_account: Any) -> None:
    account, pipeline = synced(make_account(imports=300, stuck=0))
    account.store.advance(new=10, seconds=600)
    account.store.advance(new=0, seconds=600)
    account.store.advance(new=0, seconds=600)  # the ten new imports are finished
    added = account.sync(pipeline, status="completed").new
    assert added > 0
    execute(
        account,
        "DELETE FROM resend.contact_imports WHERE id IN"
        f" (SELECT id FROM resend.contact_imports ORDER BY created_at LIMIT {added})",
    )
    account.sync(pipeline)
    assert account.differences() == []


@pytest.mark.parametrize("table", ["_dlt_pipeline_state", "_dlt_loads", "_dlt_version"])
def test_a_dropped_dlt_table_does_not_stop_later_runs(
    make_account: Any, destination_name: str, table: str
) -> None:
    account, _pipeline = synced(make_account(imports=300))
    execute(account, f"DROP TABLE resend.{table}")
    failures: List[str] = []
    for _ in range(2):
        account.store.advance(new=3, seconds=600)
        try:
            account.sync(account.pipeline())
        except Exception as exc:  # noqa: BLE001  (what the user would see, collected)
            failures.append(explain(exc) or type(exc).__name__)
    assert failures == []
    assert account.differences() == []


@pytest.mark.parametrize("table", ["contact_imports_quarantine", "contact_import_alerts"])
def test_a_dropped_quarantine_or_alerts_table_takes_the_next_rows(
    make_account: Any, destination_name: str, table: str
) -> None:
    account: Account = make_account(imports=300, history_end=datetime.now(UTC))
    pipeline = account.pipeline()
    read_malformed(account, account.store.truth()[150]["id"])
    account.sync(pipeline)
    execute(account, f"DROP TABLE resend.{table}")
    account.store.advance(new=5, seconds=600)
    newest: Dict[str, Any] = {account.store.truth()[0]["id"]: {"counts": {"total": "y"}}}
    account.simulator.rewrite = corrupting(newest)
    assert account.sync(pipeline).quarantined == 1
    assert account.query("SELECT count(*) FROM {dataset}." + table)[0][0] >= 1
