"""No silent divergence: the table equals the API after state mix-ups, 404s and deletions.

Each scenario is one that used to leave the table wrong while every run exited 0: a state
that belonged to another dataset or to a newer copy of the file, an import that answered
404 once, an open import missing from one listing, imports deleted in Resend.
"""

import json
from pathlib import Path
from typing import Any, Dict, List

import dlt
import pytest

from resend_imports_pipelines.failures import explain
from resend_imports_pipelines.run import make_pipeline

from .conftest import Account, run_cli
from .scenarios import backup, corrupting, execute, finish, finished, resource_state, synced


def deleted_rows(account: Account) -> Dict[str, Any]:
    rows = account.query(
        "SELECT id, deleted_at FROM {dataset}.contact_imports WHERE deleted_at IS NOT NULL"
    )
    return {row[0]: row[1] for row in rows}


def history_of(account: Account, import_id: str) -> List[tuple[Any, ...]]:
    return account.query(
        "SELECT previous_status, status FROM {dataset}.contact_import_status_history"
        " WHERE import_id = %s ORDER BY observed_at",
        import_id,
    )


def open_ids(account: Account, pipeline: Any, refresh_by_id: bool) -> List[str]:
    state = resource_state(pipeline)["open_imports"]
    return [k for k, v in state.items() if v["refresh_by_id"] == refresh_by_id]


# -- 1. the state belongs to the table it describes ------------------------------------------


def test_a_run_on_another_dataset_does_not_move_this_datasets_frontier(
    make_account: Any, destination_name: str
) -> None:
    account: Account = make_account(imports=400)
    account.sync(account.pipeline())
    account.store.advance(new=300, seconds=600)
    account.store.advance(new=0, seconds=600)  # the 300 finish
    other = account.pipeline(dataset="other")
    for _ in range(3):
        assert account.sync(other).mode in ("first", "incremental")
        account.store.advance(new=5, seconds=600)
    summary = account.sync(account.pipeline())
    assert summary.mode == "incremental"
    assert account.differences() == []
    assert account.differences(dataset="other") != []  # the last advance is not there yet


def test_a_restored_backup_is_brought_up_to_date(make_account: Any, destination_name: str) -> None:
    account, pipeline = synced(make_account(imports=400))
    restore = backup(account)
    for _ in range(3):
        account.store.advance(new=100, seconds=600)
        account.sync(pipeline)
    restore()  # the local state in DLT_DATA_DIR stays newer than the restored table
    account.store.advance(new=10, seconds=600)
    account.sync(account.pipeline())
    assert account.differences() == []


def test_switching_destination_under_one_pipeline_name_keeps_each_table_right(
    make_account: Any, destination_name: str
) -> None:
    """DuckDB file to another DuckDB file, or PostgreSQL to a DuckDB file and back."""
    account: Account = make_account(imports=300)
    second = account.workdir / "second.duckdb"
    account.sync(account.pipeline())
    account.store.advance(new=200, seconds=600)
    first_run = account.sync(account.pipeline(duckdb_path=second))
    assert first_run.mode == "first"  # nothing committed in the second file
    account.store.advance(new=50, seconds=600)
    account.sync(account.pipeline())
    assert account.differences() == []
    account.store.advance(new=50, seconds=600)
    account.sync(account.pipeline(duckdb_path=second))
    assert account.differences(second) == []


def test_a_wiped_destination_makes_a_first_run(make_account: Any, destination_name: str) -> None:
    account: Account = make_account(imports=300)
    account.sync(account.pipeline())
    if account.postgres is None:
        account.duckdb_path.unlink()
    else:
        account.postgres.reset_database()
    account.store.advance(new=20, seconds=600)
    summary = account.sync(account.pipeline())
    assert summary.mode == "first"
    assert summary.rows == len(account.store)
    assert account.differences() == []


def test_a_pending_package_of_another_copy_is_discarded_not_loaded(
    make_account: Any, destination_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    account, pipeline = synced(make_account(imports=300))
    restore = backup(account)
    account.store.advance(new=100, seconds=600)
    account.sync(pipeline)
    account.store.advance(new=100, seconds=600)
    pipeline.extract(_source(account))  # a run that stopped after extracting
    assert pipeline.has_pending_data
    restore()
    account.sync(account.pipeline())
    assert "discarding 1 load package(s)" in caplog.text
    assert account.differences() == []


def _source(account: Account) -> Any:
    from resend_imports import resend_source

    from .conftest import API_KEY, FAST_RETRIES

    return resend_source(api_key=API_KEY, base_url=account.url, **FAST_RETRIES)


# -- 2. 404s and deletions ---------------------------------------------------------------------


def test_a_watched_import_that_answers_404_once_is_refreshed_when_it_answers_again(
    make_account: Any,
    destination_name: str,
) -> None:
    account, pipeline = synced(make_account(imports=600, stuck=2))
    target = open_ids(account, pipeline, refresh_by_id=True)[0]
    account.simulator.not_found_for[target] = 1
    summary = account.sync(pipeline)
    assert summary.not_found == 1 and summary.deleted == 0
    assert resource_state(pipeline)["open_imports"][target]["missing_runs"] == 1
    finish(account.store, target)
    account.sync(pipeline)
    assert account.differences() == []
    assert deleted_rows(account) == {}
    assert resource_state(pipeline)["open_imports"].get(target) is None  # terminal now


def test_an_open_import_left_out_of_one_listing_is_fetched_by_id(
    make_account: Any, destination_name: str
) -> None:
    account, pipeline = synced(make_account(imports=300, stuck=0))
    account.store.advance(new=40, seconds=600)
    account.sync(pipeline)
    target = open_ids(account, pipeline, refresh_by_id=False)[0]
    account.store.advance(new=10, seconds=600)
    account.simulator.unlisted_for[target] = 1
    summary = account.sync(pipeline)
    assert summary.refreshed_by_id == 1 and account.requests("get") == 1
    assert account.differences() == []
    account.store.advance(new=10, seconds=600)
    account.sync(pipeline)
    assert account.differences() == []


@pytest.mark.parametrize("kind", ["paged", "watched"])
def test_a_deleted_open_import_is_marked_deleted_after_three_runs(
    make_account: Any, destination_name: str, kind: str
) -> None:
    account, pipeline = synced(make_account(imports=600, stuck=2))
    account.store.advance(new=40, seconds=600)
    account.sync(pipeline)
    target = open_ids(account, pipeline, refresh_by_id=kind == "watched")[0]
    account.store.delete(target)
    for run in (1, 2):
        summary = account.sync(pipeline)
        assert summary.not_found == 1 and summary.deleted == 0, run
        assert resource_state(pipeline)["open_imports"][target]["missing_runs"] == run
        assert deleted_rows(account) == {}
    summary = account.sync(pipeline)
    assert summary.deleted == 1
    assert list(deleted_rows(account)) == [target]
    assert target not in resource_state(pipeline)["open_imports"]
    assert history_of(account, target)[-1][1] == "deleted"
    assert account.differences() == []
    account.store.advance(new=5, seconds=600)
    assert account.sync(pipeline).deleted == 0  # marked once
    assert account.differences() == []


def test_gone_after_runs_is_a_setting(make_account: Any, destination_name: str) -> None:
    account, pipeline = synced(make_account(imports=600, stuck=1))
    target = open_ids(account, pipeline, refresh_by_id=True)[0]
    account.store.delete(target)
    assert account.sync(pipeline, gone_after_runs=1).deleted == 1
    assert list(deleted_rows(account)) == [target]
    in_view = account.query("SELECT id FROM {dataset}.contact_imports_enriched")
    daily = account.query("SELECT sum(imports) FROM {dataset}.contact_imports_daily")
    assert len(in_view) == len(account.store) and (target,) not in in_view
    assert daily == [(len(account.store),)]
    report = run_cli(
        account, "report", "--destination", account.destination_name, "--format", "json"
    )
    assert report.returncode == 0, report.stderr
    assert json.loads(report.stdout)["deleted"] == [{"deleted_imports": 1}]


def test_full_refresh_marks_deleted_what_no_listing_returns_and_clears_what_came_back(
    make_account: Any,
    destination_name: str,
) -> None:
    account, pipeline = synced(make_account(imports=500, stuck=0))
    deep = [item["id"] for item in account.store.truth()[-3:]]  # terminal, deep in history
    for import_id in deep:
        account.store.delete(import_id)
    account.sync(pipeline)
    assert deleted_rows(account) == {}  # the frontier cannot see them: documented
    summary = account.sync(pipeline, full_refresh=True)
    assert summary.deleted == 3 and account.requests("get") == 3
    assert sorted(deleted_rows(account)) == sorted(deep)
    assert account.differences() == []
    account.store.undelete(deep[0])
    account.sync(pipeline, full_refresh=True)
    assert sorted(deleted_rows(account)) == sorted(deep[1:])
    assert account.differences() == []


def test_an_import_the_table_holds_twice_is_marked_deleted_once(
    make_account: Any, destination_name: str
) -> None:
    """A person copied a row; Resend then deleted the import: one deletion, counted once,
    one history row (not one per copy)."""
    account, pipeline = synced(make_account(imports=300, stuck=0))
    target = finished(account, 100)
    copy = f"SELECT * FROM resend.contact_imports WHERE id = '{target}'"
    execute(account, f"INSERT INTO resend.contact_imports {copy}")
    before = len(history_of(account, target))
    account.store.delete(target)
    summary = account.sync(pipeline, full_refresh=True)
    assert summary.deleted == 1
    assert len(history_of(account, target)) == before + 1
    assert list(deleted_rows(account)) == [target]
    assert account.differences() == []


def test_a_complete_listing_runs_on_schedule(make_account: Any, destination_name: str) -> None:
    account, pipeline = synced(make_account(imports=300, stuck=0))
    account.store.delete(account.store.truth()[-1]["id"])
    assert account.sync(pipeline, full_refresh_every_days=1).mode == "incremental"
    summary = account.sync(pipeline, full_refresh_every_days=1e-9)
    assert (summary.mode, summary.deleted) == ("scheduled full", 1)
    assert account.differences() == []


def test_a_filtered_run_on_another_dataset_keeps_that_datasets_state(
    make_account: Any, destination_name: str
) -> None:
    account: Account = make_account(imports=300, stuck=0)
    account.sync(account.pipeline(dataset="other"))
    account.store.advance(new=100, seconds=600)
    account.sync(account.pipeline())
    account.store.advance(new=0, seconds=600)
    account.store.advance(new=0, seconds=600)
    account.sync(account.pipeline())  # the local state is now the newer, and `resend`'s
    account.sync(account.pipeline(dataset="other"), status="failed")
    account.store.advance(new=5, seconds=600)
    account.sync(account.pipeline(dataset="other"))
    assert account.differences(dataset="other") == []


def test_an_import_that_comes_back_and_goes_again_is_in_the_history_each_time(
    make_account: Any, destination_name: str
) -> None:
    account, pipeline = synced(make_account(imports=500, stuck=0))
    deep = account.store.truth()[-1]["id"]
    account.store.delete(deep)
    assert account.sync(pipeline, full_refresh=True).deleted == 1
    account.store.undelete(deep)
    account.sync(pipeline, full_refresh=True)
    assert deleted_rows(account) == {}
    account.store.delete(deep)
    assert account.sync(pipeline, full_refresh=True).deleted == 1
    assert account.differences() == []
    steps = [(before, after) for before, after in history_of(account, deep)]
    assert steps == [
        (None, "completed"),
        ("completed", "deleted"),
        ("deleted", "completed"),
        ("completed", "deleted"),
    ] or steps == [
        (None, "failed"),
        ("failed", "deleted"),
        ("deleted", "failed"),
        ("failed", "deleted"),
    ]


def test_a_404_streak_that_was_no_deletion_heals_at_the_next_run(
    make_account: Any, destination_name: str
) -> None:
    account, pipeline = synced(make_account(imports=600, stuck=1))
    target = open_ids(account, pipeline, refresh_by_id=True)[0]
    account.simulator.not_found_for[target] = 3  # three runs of a flaky GET by id
    for _ in range(3):
        summary = account.sync(pipeline)
    assert summary.deleted == 1 and list(deleted_rows(account)) == [target]
    finish(account.store, target)
    account.sync(pipeline)  # re-checked by id: it answers, so it was not deleted
    assert deleted_rows(account) == {}
    assert account.differences() == []
    assert history_of(account, target)[-1][0] == "deleted"


def test_a_filesystem_destination_syncs_on_though_it_cannot_reconcile(
    make_account: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    account: Account = make_account(imports=300, stuck=0)

    def pipeline() -> Any:
        destination = dlt.destinations.filesystem(str(tmp_path / "bucket"))
        return make_pipeline(destination, pipeline_name="files", pipelines_dir=str(tmp_path))

    account.sync(pipeline())
    account.store.advance(new=10, seconds=600)
    assert account.sync(pipeline()).mode == "incremental"  # jsonl beside the parquet
    for _ in range(2):
        account.store.advance(new=1, seconds=600)
        assert account.sync(pipeline(), full_refresh_every_days=1e-9).mode == "scheduled full"
    assert account.sync(pipeline()).mode == "incremental"  # listed completely just now


def test_a_terminal_import_changed_deep_in_history_is_caught_by_a_full_listing(
    make_account: Any,
    destination_name: str,
) -> None:
    account, pipeline = synced(make_account(imports=300, stuck=0))
    deep = account.store.truth()[-1]["id"]
    account.store.set_field(deep, status="failed")
    account.sync(pipeline)
    assert account.differences() != []  # what the frontier assumes: documented
    account.sync(pipeline, full_refresh=True)
    assert account.differences() == []


# -- 3. one typing rule for fields Resend adds ------------------------------------------------


def _with_field(values: Dict[str, Any], default: Any) -> Any:
    def rewrite(path: str, body: Any) -> Any:
        for item in body.get("data", [body]):
            item["weight"] = values.get(item["id"], default)
        return body

    return rewrite


TYPE_NAMES = {"double precision": "double", "character varying": "text", "varchar": "text"}


def weight_columns(account: Account) -> Dict[str, str]:
    rows = account.query(
        "SELECT column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = 'resend' AND table_name = 'contact_imports'"
        " AND column_name LIKE 'weight%%'"
    )
    return {name: TYPE_NAMES.get(kind.lower(), kind.lower()) for name, kind in rows}


def weights(account: Account) -> Dict[str, tuple[Any, ...]]:
    columns = sorted(weight_columns(account))
    rows = account.query(f"SELECT id, {', '.join(columns)} FROM {{dataset}}.contact_imports")
    return {row[0]: tuple(row[1:]) for row in rows}


@pytest.mark.reliability  # 6,000 imports on both destinations: in `make reliability`
def test_int_then_float_across_batches_of_a_first_run_loads_like_a_row_by_row_run(
    make_account: Any,
    destination_name: str,
) -> None:
    account: Account = make_account(imports=6000, stuck=0)
    ids = [item["id"] for item in account.store.truth()]
    account.simulator.rewrite = _with_field({i: 0.5 for i in ids[5000:]}, 7)
    summary = account.sync()
    assert summary.mode == "first"
    assert weight_columns(account) == {"weight": "bigint", "weight__v_double": "double"}
    loaded = weights(account)
    assert {loaded[i] for i in ids[:5000]} == {(7, None)}
    assert {loaded[i] for i in ids[5000:]} == {(None, 0.5)}
    assert account.differences() == []


@pytest.mark.parametrize(
    ("later", "variant"),
    [
        (2.7, "weight__v_double"),
        pytest.param("7kg", "weight__v_text", marks=pytest.mark.reliability),
    ],
)
def test_a_field_that_changes_type_loads_alike_incremental_and_full(
    make_account: Any, destination_name: str, later: Any, variant: str
) -> None:
    account: Account = make_account(imports=300, stuck=0)
    pipeline = account.pipeline()
    account.simulator.rewrite = _with_field({}, 7)
    account.sync(pipeline)
    account.store.advance(new=5, seconds=600)
    newest = account.store.truth()[0]["id"]
    account.simulator.rewrite = _with_field({newest: later}, 7)
    assert account.sync(pipeline).mode == "incremental"
    after_incremental = weights(account)
    assert account.sync(pipeline, full_refresh=True).mode == "full"
    assert weights(account) == after_incremental
    columns = sorted(weight_columns(account))
    assert weights(account)[newest][columns.index(variant)] == later
    assert weights(account)[newest][columns.index("weight")] is None  # never 3, never cast
    assert account.differences() == []


def test_rows_the_destination_refuses_do_not_wedge_the_pipeline(
    make_account: Any, destination_name: str
) -> None:
    account: Account = make_account(imports=300, stuck=0)
    pipeline = account.pipeline()
    account.simulator.rewrite = _with_field({}, 1)
    account.sync(pipeline)
    account.store.advance(new=5, seconds=600)
    newest = account.store.truth()[0]["id"]
    # an integral float: dlt coerces it into the BIGINT column, which cannot hold it
    account.simulator.rewrite = _with_field({newest: 1e40}, 1)
    with pytest.raises(Exception) as failure:
        account.sync(pipeline)
    message = explain(failure.value)
    assert message is not None and "refused the rows of contact_imports" in message
    assert "nothing is lost" in message
    assert not pipeline.has_pending_data  # discarded, not retried forever
    account.simulator.rewrite = _with_field({}, 1)
    assert account.sync(pipeline).mode == "incremental"
    assert account.differences() == []


@pytest.mark.parametrize("full_refresh", [False, True], ids=["incremental", "complete"])
def test_a_new_field_named_like_a_known_column_never_overwrites_it(
    make_account: Any, full_refresh: bool
) -> None:
    account, pipeline = synced(make_account(imports=300))
    account.store.advance(new=5, seconds=600)
    target = finished(account)
    counts = {**(account.store.get(target) or {}).get("counts", {}), "Total": 1}
    aliases = {"completedAt": None, "Status": "renamed", "counts": counts}
    account.simulator.rewrite = corrupting({target: aliases})
    account.sync(pipeline, full_refresh=full_refresh)
    assert account.differences() == []  # observed: status 'renamed', completed_at NULL, total 1
