"""The status-transition history and the SQL views, checked against the simulator's truth."""

import json
import statistics
from collections import defaultdict
from datetime import UTC, date, datetime
from typing import Any, Dict, List, Optional, Tuple

import duckdb
import pytest

from resend_imports.records import parse_timestamp
from resend_imports.settings import COUNT_FIELDS

from .conftest import Account, run_cli
from .scenarios import synced

Observed = Tuple[str, Tuple[Optional[int], ...], Optional[str]]


def _counts(item: Dict[str, Any]) -> Tuple[Optional[int], ...]:
    counts = item.get("counts") or {}
    return tuple(counts.get(f) for f in COUNT_FIELDS)


def query(account: Account, sql: str) -> List[Tuple[Any, ...]]:
    with duckdb.connect(str(account.duckdb_path), read_only=True) as con:
        return con.execute(sql).fetchall()


class HistoryOracle:
    """What the history must hold: every (status, counts) seen at a sync, with the one before."""

    def __init__(self) -> None:
        self.last: Dict[str, Tuple[str, Tuple[Optional[int], ...]]] = {}
        self.expected: Dict[str, List[Observed]] = defaultdict(list)

    def observe(self, truth: List[Dict[str, Any]]) -> None:
        for item in truth:
            seen = (item["status"], _counts(item))
            before = self.last.get(item["id"])
            if before != seen:
                previous = before[0] if before else None
                self.expected[item["id"]].append((seen[0], seen[1], previous))
                self.last[item["id"]] = seen


def history_by_import(account: Account) -> Dict[str, List[Observed]]:
    counts = ", ".join(f"counts__{f}" for f in COUNT_FIELDS)
    rows = query(
        account,
        f"SELECT import_id, status, {counts}, previous_status, observed_at"
        " FROM resend.contact_import_status_history ORDER BY import_id, observed_at",
    )
    history: Dict[str, List[Observed]] = defaultdict(list)
    for row in rows:
        history[row[0]].append((row[1], tuple(row[2:7]), row[7]))
    return history


def test_history_records_each_observed_change_exactly_once(make_account: Any) -> None:
    account: Account = make_account(imports=400, seed=8, stuck=2)
    pipeline = account.pipeline()
    oracle = HistoryOracle()
    started = datetime.now(UTC)
    for round_number in range(5):
        account.sync(pipeline)
        oracle.observe(account.store.truth())
        assert history_by_import(account) == oracle.expected, f"round {round_number}"
        account.store.advance(new=25, seconds=600)
        if round_number == 2:
            stuck = account.store.open_ids()[-1]
            account.store.set_status(stuck, "in_progress")
    account.store.advance(new=0, seconds=0)
    rows_before = query(account, "SELECT count(*) FROM resend.contact_import_status_history")
    account.sync(pipeline)  # sees round 5's changes
    oracle.observe(account.store.truth())
    account.sync(pipeline)  # nothing changed: no rows
    account.sync(pipeline, full_refresh=True)  # everything listed again: still no rows
    assert history_by_import(account) == oracle.expected
    assert query(account, "SELECT count(*) FROM resend.contact_import_status_history") > rows_before
    ((earliest, latest),) = query(
        account,
        "SELECT min(observed_at), max(observed_at) FROM resend.contact_import_status_history",
    )
    assert started <= earliest <= latest <= datetime.now(UTC)


def test_history_loads_in_the_same_package_as_the_imports(make_account: Any) -> None:
    account, pipeline = synced(make_account(imports=300, seed=3))
    account.store.advance(new=10, seconds=600)
    account.sync(pipeline)
    loads = query(
        account,
        "SELECT DISTINCT h._dlt_load_id, (SELECT count(*) FROM resend.contact_imports c"
        " WHERE c._dlt_load_id = h._dlt_load_id) FROM resend.contact_import_status_history h",
    )
    assert len(loads) == 2 and all(imports_in_load > 0 for _, imports_in_load in loads)


def test_filtered_runs_and_a_lost_state_never_duplicate_history(make_account: Any) -> None:
    account, pipeline = synced(make_account(imports=300, seed=4))
    account.store.advance(new=20, seconds=600)
    account.sync(pipeline, status="in_progress")  # observes, but leaves the state alone
    account.sync(pipeline)  # observes the same again
    account.sync(account.pipeline("another_pipeline_same_dataset"))  # empty state: all "new"
    ((rows, keys),) = query(
        account,
        "SELECT count(*), count(DISTINCT observation_key)"
        " FROM resend.contact_import_status_history",
    )
    assert rows == keys


def _seconds(item: Dict[str, Any]) -> Optional[float]:
    if not item["completed_at"]:
        return None
    delta = parse_timestamp(item["completed_at"]) - parse_timestamp(item["created_at"])
    return delta.total_seconds()


def _failure_rate(item: Dict[str, Any]) -> Optional[float]:
    counts = item.get("counts") or {}
    total, failed = counts.get("total"), counts.get("failed")
    return None if not total or failed is None else failed / total


def expected_daily(truth: List[Dict[str, Any]]) -> Dict[date, Dict[str, Any]]:
    days: Dict[date, List[Dict[str, Any]]] = defaultdict(list)
    for item in truth:
        days[parse_timestamp(item["created_at"]).astimezone(UTC).date()].append(item)

    def total(items: List[Dict[str, Any]], field: str) -> Optional[int]:
        values = [(i.get("counts") or {}).get(field) for i in items]
        present = [v for v in values if v is not None]
        return sum(present) if present else None

    summary = {}
    for day, items in days.items():
        durations = [s for s in map(_seconds, items) if s is not None]
        summary[day] = {
            "imports": len(items),
            "completed_imports": sum(i["status"] == "completed" for i in items),
            "failed_imports": sum(i["status"] == "failed" for i in items),
            "open_imports": sum(i["status"] not in ("completed", "failed") for i in items),
            **{f"rows_{f}": total(items, f) for f in COUNT_FIELDS},
            "median_duration_seconds": statistics.median(durations) if durations else None,
        }
    return summary


def test_views_match_values_computed_from_truth(make_account: Any) -> None:
    account, pipeline = synced(make_account(imports=1500, seed=6, stuck=2))
    account.store.advance(new=40, seconds=600)
    account.sync(pipeline)
    truth = account.store.truth()

    enriched = {
        row[0]: row[1:]
        for row in query(
            account,
            "SELECT id, duration_seconds, failure_rate, is_terminal, counts__total"
            " FROM resend.contact_imports_enriched",
        )
    }
    assert len(enriched) == len(truth)
    for item in truth:
        duration, rate, terminal, total = enriched[item["id"]]
        assert duration == pytest.approx(_seconds(item)) if _seconds(item) else duration is None
        assert (
            rate == pytest.approx(_failure_rate(item))
            if _failure_rate(item) is not None
            else (rate is None)
        )
        assert terminal == (item["status"] in ("completed", "failed"))
        assert total == (item.get("counts") or {}).get("total")

    columns = [
        "imports", "completed_imports", "failed_imports", "open_imports",
        *(f"rows_{f}" for f in COUNT_FIELDS), "median_duration_seconds",
    ]  # fmt: skip
    daily = {
        row[0]: dict(zip(columns, row[1:], strict=True))
        for row in query(
            account, f"SELECT day, {', '.join(columns)} FROM resend.contact_imports_daily"
        )
    }
    expected = expected_daily(truth)
    assert daily.keys() == expected.keys()
    for day, values in expected.items():
        got = daily[day]
        assert got["median_duration_seconds"] == pytest.approx(values["median_duration_seconds"])
        assert {k: v for k, v in got.items() if k != "median_duration_seconds"} == {
            k: v for k, v in values.items() if k != "median_duration_seconds"
        }, day


def test_views_are_recreated_idempotently_and_follow_new_columns(account: Account) -> None:
    pipeline = account.pipeline()
    account.sync(pipeline)

    def add_field(path: str, body: Any) -> Any:
        for item in body.get("data", [body]):
            item["source"] = "api"
        return body

    account.simulator.rewrite = add_field
    account.sync(pipeline, full_refresh=True)
    ((count,),) = query(
        account, "SELECT count(*) FROM resend.contact_imports_enriched WHERE source = 'api'"
    )
    assert count == len(account.store)


@pytest.mark.reliability
def test_report_command_reads_the_views(account: Account) -> None:
    assert run_cli(account, "sync").returncode == 0
    as_json = run_cli(account, "report", "--days", "3", "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    expected = expected_daily(account.store.truth())
    newest_days = sorted(expected, reverse=True)[:3]
    assert [row["day"] for row in report["daily"]] == [d.isoformat() for d in newest_days]
    for row in report["daily"]:
        assert row["imports"] == expected[date.fromisoformat(row["day"])]["imports"]
    rates = [row["failure_rate"] for row in report["worst_imports"]]
    assert rates == sorted(rates, reverse=True) and len(rates) <= 10
    as_csv = run_cli(account, "report", "--format", "csv")
    assert as_csv.stdout.startswith("day,imports,completed_imports")
    assert "\n\nid,status,created_at,counts__total,counts__failed,failure_rate" in as_csv.stdout
    as_table = run_cli(account, "report")
    assert "Contact imports per day" in as_table.stdout and "day (UTC)" in as_table.stdout
    assert "Worst finished imports by failure rate" in as_table.stdout


def test_report_before_any_sync_is_one_line(account: Account) -> None:
    result = run_cli(account, "report")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"resend-imports: error: no DuckDB file at {account.duckdb_path}: run `resend-imports"
        " sync` first, or name the file with --duckdb PATH (or DESTINATION__DUCKDB__CREDENTIALS)"
    )
    assert not account.duckdb_path.exists()
