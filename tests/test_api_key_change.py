"""The state knows which API key loaded the table (a salted fingerprint, never the key): a key
of another Resend account starts over with a complete listing and soft-deletes the previous
account's imports without a request each; a rotated key of the same account costs one
complete listing and changes nothing."""

from datetime import UTC, datetime
from typing import Any, Callable, Dict, List, Set, Tuple

import pytest

from resend_imports_pipelines.failures import explain

from .conftest import API_KEY, Account
from .scenarios import (
    deleted_at,
    finished,
    history_statuses,
    read_malformed,
    resource_state,
    synced,
)

OTHER_KEY = "re_other_team_Xx9kEYdoNotLeak_77"
ROTATED_KEY = "re_rotated_Qq1kEYdoNotLeak_05"


def alert_keys(account: Account, dataset: str = "resend") -> Set[str]:
    rows = account.query("SELECT alert_key FROM {dataset}.contact_import_alerts", dataset=dataset)
    return {row[0] for row in rows}


def history_by_import(account: Account, dataset: str = "resend") -> Dict[str, int]:
    rows = account.query(
        "SELECT import_id, count(*) FROM {dataset}.contact_import_status_history"
        " GROUP BY import_id",
        dataset=dataset,
    )
    return {row[0]: row[1] for row in rows}


def two_accounts_on_one_destination(
    make_account: Any, old_imports: int, new_imports: int
) -> Tuple[Account, Account, Any]:
    """Two Resend accounts writing one destination (PostgreSQL: one database already), the
    first synced once: the second's key is the key a person swapped in."""
    now = datetime.now(UTC)
    old: Account = make_account(imports=old_imports, seed=1, history_end=now)
    new: Account = make_account(imports=new_imports, seed=2, history_end=now, api_keys=(OTHER_KEY,))
    new.duckdb_path = old.duckdb_path
    pipeline = old.pipeline()
    old.sync(pipeline)
    return old, new, pipeline


def test_another_accounts_key_lists_everything_and_retires_the_old_account(
    make_account: Any, destination_name: str
) -> None:
    now = datetime.now(UTC)
    old: Account = make_account(imports=610, seed=1, history_end=now)
    new: Account = make_account(imports=430, seed=2, history_end=now, api_keys=(OTHER_KEY,))
    new.duckdb_path = old.duckdb_path  # one destination (PostgreSQL: one database already)
    pipeline = old.pipeline()
    old.sync(pipeline)
    old.store.advance(new=10, seconds=600)
    old.sync(pipeline)
    state = resource_state(pipeline)
    assert state["key_fingerprint"] and API_KEY not in str(state)  # never the key itself

    summary = new.sync(pipeline)  # same table, the other team's key
    assert summary.mode == "another key"
    assert summary.new == 430 and summary.deleted == 620
    assert new.requests("get") == 0  # the old account's imports: no request each
    assert new.requests("list") == 5  # ceil(430 / 100)
    assert new.differences() == []  # live rows: exactly the new account
    deleted = old.query(
        "SELECT count(*) FROM {dataset}.contact_imports WHERE deleted_at IS NOT NULL"
    )
    assert deleted == [(620,)]
    assert OTHER_KEY not in str(resource_state(pipeline))

    # its history and alerts are what a first sync of that account alone would write
    fresh = new.pipeline(dataset="fresh")
    new.sync(fresh)
    history = history_by_import(new)
    new_ids = {item["id"] for item in new.store.truth()}
    assert {i: history[i] for i in new_ids} == history_by_import(new, "fresh")
    raised = {key for key in alert_keys(new) if key.split("|")[0] in new_ids}
    assert raised == alert_keys(new, "fresh") and raised

    new.store.advance(new=5, seconds=600)
    assert new.sync(pipeline).mode == "incremental"
    assert new.differences() == []


def test_a_rotated_key_of_the_same_account_costs_one_complete_listing(
    make_account: Any, destination_name: str
) -> None:
    account, pipeline = synced(make_account(imports=300, api_keys=(API_KEY, ROTATED_KEY)))
    account.store.advance(new=10, seconds=600)
    account.sync(pipeline)
    history_before = history_by_import(account)
    account.api_key = ROTATED_KEY
    summary = account.sync(pipeline)
    assert summary.mode == "another key"
    assert (summary.new, summary.updated, summary.deleted) == (0, 0, 0)
    assert account.requests("get") == 0 and account.requests("list") == 4
    assert history_by_import(account) == history_before  # nothing changed, nothing recorded
    account.store.advance(new=3, seconds=600)
    assert account.sync(pipeline).mode == "incremental"
    assert account.differences() == []


def _left_out_of_one_listing(account: Account, import_id: str) -> None:
    account.simulator.unlisted_for[import_id] = 1


@pytest.mark.parametrize(
    "glitch", [read_malformed, _left_out_of_one_listing], ids=["malformed", "unlisted once"]
)
def test_a_rotated_key_never_marks_deleted_an_import_its_account_still_has(
    make_account: Any, glitch: Callable[[Account, str], None]
) -> None:
    account, pipeline = synced(make_account(imports=300, api_keys=(API_KEY, ROTATED_KEY)))
    target = finished(account, 150)
    glitch(account, target)
    account.api_key = ROTATED_KEY
    summary = account.sync(pipeline)
    assert summary.mode == "another key"
    assert summary.deleted == 0  # observed: 1 ("import ... is gone from Resend")
    assert deleted_at(account, target) is None
    assert "deleted" not in history_statuses(account, target)


def test_a_rotated_key_whose_first_listing_is_empty_is_made_whole_by_the_next_run(
    make_account: Any,
) -> None:
    # before: the table's imports stayed deleted through every incremental run, until the
    # weekly complete listing (a listing of nothing shares no import: another account's)
    account, pipeline = synced(make_account(imports=300, api_keys=(API_KEY, ROTATED_KEY)))
    # the new key's first listing answered short: nothing, and no more
    account.simulator.rewrite = lambda path, body: {**body, "has_more": False, "data": []}
    account.api_key = ROTATED_KEY
    summary = account.sync(pipeline)
    assert (summary.mode, summary.deleted) == ("another key", 300)  # an empty account's?
    account.simulator.rewrite = None

    summary = account.sync(pipeline)
    assert summary.mode == "repair" and account.requests("list") == 3  # every import listed
    assert account.differences() == []
    assert account.sync(pipeline).mode == "incremental"


def test_a_filtered_run_with_another_key_is_refused_in_one_line(make_account: Any) -> None:
    """A filtered listing cannot tell another account from a rotated key: the run refuses
    before writing, and the table stays its account's."""
    own, other, pipeline = two_accounts_on_one_destination(make_account, 300, 200)
    with pytest.raises(Exception) as failure:
        other.sync(pipeline, status="failed")
    message = explain(failure.value)
    assert message is not None and "\n" not in message
    assert "a filtered run cannot tell another account from a rotated key" in message
    own.store.advance(new=5, seconds=600)
    assert own.sync(pipeline).mode == "incremental"
    assert own.differences() == []


def test_after_another_key_later_runs_do_not_fetch_the_old_accounts_imports(
    make_account: Any,
) -> None:
    _old, new, pipeline = two_accounts_on_one_destination(make_account, 400, 100)
    assert new.sync(pipeline).deleted == 400  # without a request each, as documented
    new.store.advance(new=2, seconds=600)
    summary = new.sync(pipeline)
    assert summary.mode == "incremental"
    assert new.requests("get") == 0  # observed: 400, "answered 404 400"


def test_an_another_key_run_that_fails_halfway_is_done_again_by_the_next(
    make_account: Any,
) -> None:
    _old, new, pipeline = two_accounts_on_one_destination(make_account, 300, 250)
    pages: List[str] = []

    def fail_the_second_page(path: str, body: Any) -> Any:
        pages.append(path)
        return {"object": "list", "data": [], "has_more": True} if len(pages) == 2 else body

    new.simulator.rewrite = fail_the_second_page
    with pytest.raises(Exception) as failure:
        new.sync(pipeline)
    assert "has_more is true but the page is empty" in (explain(failure.value) or "")
    new.simulator.rewrite = None
    summary = new.sync(pipeline)
    assert summary.mode == "another key"
    assert (summary.new, summary.deleted) == (250, 300)
    assert new.differences() == []
