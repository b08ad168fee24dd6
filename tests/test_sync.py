"""End to end: the source syncs the simulator into a real DuckDB file and stays correct."""

import logging
import math
from datetime import datetime
from typing import Any, Callable, Dict, List, Optional

import dlt
import duckdb
import pyarrow as pa
import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from resend_imports import resend_source
from resend_imports.records import parse_timestamp
from resend_imports_pipelines.failures import explain
from resend_imports_pipelines.simulator import FAULT_KINDS, FaultPlan

from .conftest import API_KEY, Account
from .scenarios import resource_state, synced


def table_rows(account: Account) -> List[tuple[Any, ...]]:
    with duckdb.connect(str(account.duckdb_path), read_only=True) as con:
        return con.sql(
            "SELECT * EXCLUDE (_dlt_load_id, _dlt_id) FROM resend.contact_imports ORDER BY id"
        ).fetchall()


def imports_since(account: Account, frontier: Optional[str]) -> int:
    assert frontier is not None
    floor = datetime.fromisoformat(frontier)
    return sum(parse_timestamp(i["created_at"]) >= floor for i in account.store.truth())


def test_full_sync_equals_truth_with_one_request_per_page(make_account: Any) -> None:
    account: Account = make_account(imports=1234)
    summary = account.sync()
    assert account.differences() == []
    assert account.requests("list") == math.ceil(1234 / 100) == summary.requests
    assert (summary.mode, summary.rows, summary.new, summary.updated) == ("first", 1234, 1234, 0)


def test_incremental_runs_stay_equal_to_truth_and_cheap(make_account: Any) -> None:
    account, pipeline = synced(make_account(imports=2000, stuck=3))
    for round_number in range(4):
        state = resource_state(pipeline)
        watched = [k for k, v in state["open_imports"].items() if v["refresh_by_id"]]
        paged_open = [
            v["created_at"] for v in state["open_imports"].values() if not v["refresh_by_id"]
        ]
        frontier = (
            min(paged_open, key=datetime.fromisoformat)
            if paged_open
            else state["newest_created_at"]
        )
        account.store.advance(new=30 + 40 * round_number, seconds=900)
        summary = account.sync(pipeline)
        assert account.differences() == [], f"round {round_number}"
        # pages down to the frontier (the page that crosses it included), stuck ones by id
        assert account.requests("list") <= math.ceil((imports_since(account, frontier) + 1) / 100)
        assert account.requests("get") == len(watched) == 3
        assert summary.mode == "incremental"
        assert summary.new == 30 + 40 * round_number
        assert summary.requests == account.requests("total")


def test_quiet_run_makes_one_request(make_account: Any) -> None:
    account: Account = make_account(imports=500, stuck=0)
    account.store.advance(new=0, seconds=3600)
    account.store.advance(new=0, seconds=3600)  # everything open has finished
    assert account.store.open_ids() == []
    pipeline = account.pipeline()
    account.sync(pipeline)
    summary = account.sync(pipeline)
    assert account.requests("total") == 1
    assert (summary.new, summary.updated, summary.open_imports) == (0, 0, 0)
    assert account.differences() == []


def test_stuck_import_deep_in_history_is_refreshed_by_id(make_account: Any) -> None:
    account, pipeline = synced(make_account(imports=3000, stuck=1))
    stuck = [i for i in account.store.open_ids() if i in resource_state(pipeline)["open_imports"]]
    deep = [k for k, v in resource_state(pipeline)["open_imports"].items() if v["refresh_by_id"]]
    assert len(deep) == 1 and deep[0] in stuck
    account.store.set_status(deep[0], "in_progress")
    account.store.advance(new=5, seconds=600)
    summary = account.sync(pipeline)
    assert account.requests("list") == 1
    assert account.requests("get") == 1
    assert summary.refreshed_by_id == 1
    assert account.differences() == []


@pytest.mark.parametrize("page_size", [1, 3, 7])
def test_ties_on_created_at_never_drop_rows(make_account: Any, page_size: int) -> None:
    account: Account = make_account(imports=120, tie_rate=0.6, seed=page_size)
    pipeline = account.pipeline()
    account.sync(pipeline, page_size=page_size)
    for _ in range(4):
        account.store.advance(new=9, seconds=5)  # many arrivals within the same instants
        account.sync(pipeline, page_size=page_size)
        assert account.differences() == []


def test_full_refresh_lists_everything_again_without_duplicates(make_account: Any) -> None:
    account, pipeline = synced(make_account(imports=450))
    account.store.advance(new=12, seconds=600)
    summary = account.sync(pipeline, full_refresh=True)
    assert summary.mode == "full"
    assert account.requests("list") == math.ceil(462 / 100)
    assert account.differences() == []
    assert summary.new == 12


def test_status_filter_loads_only_matches_and_leaves_state_alone(make_account: Any) -> None:
    account: Account = make_account(imports=600)
    pipeline = account.pipeline()
    summary = account.sync(pipeline, status="failed")
    failed = {i["id"] for i in account.store.truth() if i["status"] == "failed"}
    assert summary.mode == "filtered"
    assert {row[0] for row in table_rows(account)} == failed
    assert resource_state(pipeline) == {}
    account.sync(pipeline)
    assert account.differences() == []
    before = resource_state(pipeline)
    account.store.advance(new=3, seconds=600)
    account.sync(pipeline, status="completed")
    assert resource_state(pipeline) == before
    assert account.sync(pipeline).mode == "incremental"
    assert account.differences() == []


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_each_fault_kind_is_survived_end_to_end(make_account: Any, kind: str) -> None:
    account: Account = make_account(imports=700)
    account.simulator.faults = FaultPlan(
        rate=0.3, kinds=(kind,), retry_after=0, slow_seconds=0.4, seed=len(kind)
    )
    pipeline = account.pipeline()
    summary = account.sync(pipeline, read_timeout_seconds=0.2, max_attempts=8)
    account.store.advance(new=20, seconds=600)
    second = account.sync(pipeline, read_timeout_seconds=0.2, max_attempts=8)
    assert account.differences() == []
    assert summary.retries >= 1
    assert second.retries == account.requests("faults")  # one retry per injected fault


def test_same_id_twice_in_one_run_leaves_one_row(account: Account) -> None:
    source = resend_source(api_key=API_KEY, base_url=account.url)
    source.contact_imports.add_map(lambda table: pa.concat_tables([table, table]))
    pipeline = account.pipeline()
    pipeline.run(source)
    rows = table_rows(account)
    assert len(rows) == len(account.store) == len({r[0] for r in rows})
    assert account.differences() == []


def test_columns_are_typed_from_the_first_run_without_counts(make_account: Any) -> None:
    account: Account = make_account(imports=0)
    account.store.advance(new=4, seconds=1)  # only queued/in_progress imports, no counts
    account.store.truth()
    account.sync()
    with duckdb.connect(str(account.duckdb_path), read_only=True) as con:
        types = dict(
            con.sql(
                "SELECT column_name, data_type FROM information_schema.columns"
                " WHERE table_schema = 'resend' AND table_name = 'contact_imports'"
            ).fetchall()
        )
    assert types["id"] == "VARCHAR" and types["status"] == "VARCHAR"
    assert types["created_at"] == types["completed_at"] == "TIMESTAMP WITH TIME ZONE"
    for field in ("total", "created", "updated", "skipped", "failed"):
        assert types[f"counts__{field}"] == "BIGINT"


def test_unknown_fields_and_statuses_load_and_are_logged(
    account: Account, caplog: pytest.LogCaptureFixture
) -> None:
    target = account.store.truth()[0]["id"]
    account.store.set_status(target, "paused")

    def add_field(path: str, body: Any) -> Any:
        for item in body.get("data", [body]):
            item["segment_id"] = "seg_42"
        return body

    account.simulator.rewrite = add_field
    pipeline = account.pipeline()
    with caplog.at_level(logging.WARNING, logger="resend_imports"):
        account.sync(pipeline)
    assert "new field 'segment_id'" in caplog.text
    assert "unknown import status 'paused'" in caplog.text
    with duckdb.connect(str(account.duckdb_path), read_only=True) as con:
        tagged = "SELECT count(*) FROM resend.contact_imports WHERE segment_id = 'seg_42'"
        assert con.execute(tagged).fetchone() == (len(account.store),)
        status = "SELECT status FROM resend.contact_imports WHERE id = ?"
        assert con.execute(status, [target]).fetchone() == ("paused",)
    assert target in resource_state(pipeline)["open_imports"]  # refreshed until terminal


def test_a_nested_new_field_gets_the_same_columns_in_full_and_incremental_runs(
    account: Account,
) -> None:
    def add_nested_fields(path: str, body: Any) -> Any:
        for item in body.get("data", [body]):
            item["source"] = {"kind": "csv", "file": {"rows": 3}}
            item["tags"] = ["a", "b"]
        return body

    account.simulator.rewrite = add_nested_fields
    pipeline = account.pipeline()
    assert account.sync(pipeline).mode == "first"  # one large batch
    account.store.advance(new=20, seconds=600)
    assert account.sync(pipeline).mode == "incremental"  # a small batch
    with duckdb.connect(str(account.duckdb_path), read_only=True) as con:
        tables = {
            row[0] for row in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()
        }
        columns = dict(
            con.execute(
                "SELECT column_name, data_type FROM information_schema.columns"
                " WHERE table_schema = 'resend' AND table_name = 'contact_imports'"
            ).fetchall()
        )
        loaded = con.execute(
            "SELECT count(*) FROM resend.contact_imports"
            " WHERE source__kind = 'csv' AND source__file__rows = 3 AND tags = '[\"a\", \"b\"]'"
        ).fetchone()
    assert not any(name.startswith("contact_imports__") for name in tables)  # no child table
    assert columns["source__kind"] == "VARCHAR" and columns["tags"] == "VARCHAR"
    assert columns["source__file__rows"] == "BIGINT"
    assert loaded == (len(account.store),)
    assert account.differences() == []


def _corrupt_all(field: str, value: Any) -> Callable[[str, Any], Any]:
    def rewrite(path: str, body: Any) -> Any:
        for item in body.get("data") or []:
            item[field] = value
        return body

    return rewrite


def _drop_data(path: str, body: Any) -> Any:
    return {"object": "list", "has_more": False}


def _empty_more(path: str, body: Any) -> Any:
    return {**body, "data": [], "has_more": True}


def _repeat_first_page() -> Callable[[str, Any], Any]:
    first: Dict[str, Any] = {}

    def rewrite(path: str, body: Any) -> Any:
        return {**first.setdefault("page", body), "has_more": True}

    return rewrite


# Answers no run can page through; a malformed record is set aside instead
# (tests/test_malformed_records.py).
BAD_ANSWERS: Dict[str, tuple[Callable[[], Callable[[str, Any], Any]], str]] = {
    "page without any id": (lambda: _corrupt_all("id", None), "no import of a page has an id"),
    "list without data": (lambda: _drop_data, "no 'data' array"),
    "has_more with empty page": (lambda: _empty_more, "has_more is true but the page is empty"),
    "repeating cursor": (_repeat_first_page, "repeats; paging would never end"),
}


@pytest.mark.parametrize("case", sorted(BAD_ANSWERS))
def test_bad_answers_fail_the_run_and_leave_data_and_state_intact(
    make_account: Any, case: str
) -> None:
    make_rewrite, message = BAD_ANSWERS[case]
    account, pipeline = synced(make_account(imports=320))
    rows_before, state_before = table_rows(account), resource_state(pipeline)
    account.store.advance(new=150, seconds=600)
    account.simulator.rewrite = make_rewrite()
    with pytest.raises(PipelineStepFailed) as failure:
        account.sync(account.pipeline())
    explained = explain(failure.value)
    assert explained is not None and message in explained and "\n" not in explained
    assert table_rows(account) == rows_before
    assert resource_state(account.pipeline()) == state_before
    assert not account.pipeline().has_pending_data
    account.simulator.rewrite = None
    account.sync(account.pipeline())
    assert account.differences() == []


def test_retries_exhausted_commit_nothing_and_next_run_recovers(make_account: Any) -> None:
    account, pipeline = synced(make_account(imports=500))
    rows_before, state_before = table_rows(account), resource_state(pipeline)
    account.store.advance(new=250, seconds=600)
    account.simulator.faults = FaultPlan(rate=1.0, kinds=("503",))
    with pytest.raises(PipelineStepFailed) as failure:
        account.sync(account.pipeline(), max_attempts=3)
    assert "gave up after 3 attempts" in (explain(failure.value) or "")
    assert account.requests("total") == 3
    assert table_rows(account) == rows_before
    assert resource_state(account.pipeline()) == state_before
    account.simulator.faults = FaultPlan()
    account.sync(account.pipeline())
    assert account.differences() == []


def left_pending(account: Account, pipeline: dlt.Pipeline) -> None:
    """A run that died after normalize: its package is pending, not loaded."""
    pipeline.extract(resend_source(api_key=API_KEY, base_url=account.url))
    pipeline.normalize()
    assert pipeline.has_pending_data


def test_data_left_by_an_interrupted_run_is_loaded_and_the_run_still_syncs(
    make_account: Any,
) -> None:
    account, pipeline = synced(make_account(imports=400))
    account.store.advance(new=30, seconds=600)
    left_pending(account, pipeline)
    account.store.advance(new=30, seconds=600)
    summary = account.sync(pipeline)
    assert not pipeline.has_pending_data
    assert summary.new == 30  # the interrupted run had seen the first 30
    assert summary.left_over_loaded
    assert "loaded the data an interrupted run left" in "\n".join(summary.lines())
    assert account.differences() == []
    assert not account.sync(pipeline).left_over_loaded  # said by the run that loaded it only


def test_a_run_after_loading_an_interrupted_runs_data_does_not_say_nothing_changed(
    make_account: Any,
) -> None:
    account, pipeline = synced(make_account(imports=400))
    account.store.advance(new=30, seconds=600)
    left_pending(account, pipeline)
    summary = account.sync(pipeline)  # its 30 imports are in the table before the listing
    assert (summary.new, summary.updated) == (0, 0)
    first = summary.lines()[0]
    assert first.startswith("loaded into resend.contact_imports on ")
    assert "the data an interrupted run left; since then nothing changed" in first
    assert account.differences() == []
