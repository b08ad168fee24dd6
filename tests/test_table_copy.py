"""A complete listing of an existing table hands dlt only the rows that differ from the
table's (`table_copy`): an unchanged table gets no import rows to merge, so the merge grows
with the changes, not the history; a change outside status and counts, a person's edit, a
column a person dropped or a row a person copied is still put right."""

from datetime import timedelta
from typing import Any, Callable

import pytest

from sources.resend_imports.records import parse_timestamp

from .conftest import Account
from .scenarios import drop_views, execute, finished, synced


def imports_loaded(pipeline: Any) -> int:
    """The `contact_imports` rows the last run handed dlt (its normalize step)."""
    counts = pipeline.last_trace.last_normalize_info.row_counts
    return int(counts.get("contact_imports", 0))


def test_a_complete_listing_of_an_unchanged_table_hands_dlt_no_import_rows(
    make_account: Any, destination_name: str
) -> None:
    account, pipeline = synced(make_account(imports=300, stuck=0))
    assert imports_loaded(pipeline) == 300
    summary = account.sync(pipeline, full_refresh=True)
    assert (summary.mode, summary.rows, summary.new, summary.updated) == ("full", 300, 0, 0)
    assert imports_loaded(pipeline) == 0
    assert account.differences() == []


def test_a_complete_listing_hands_dlt_what_changed_only(
    make_account: Any, destination_name: str
) -> None:
    account, pipeline = synced(make_account(imports=300, stuck=0))
    account.store.advance(new=5, seconds=600)
    summary = account.sync(pipeline, full_refresh=True)
    assert summary.new == 5 and summary.updated > 0
    assert imports_loaded(pipeline) == summary.new + summary.updated < 300
    assert account.differences() == []


def test_a_change_outside_status_and_counts_is_loaded(
    make_account: Any, destination_name: str
) -> None:
    """Resend corrects `completed_at` of a finished import deep in history: no new status,
    no new counts (nothing observed), and yet the table takes it."""
    account, pipeline = synced(make_account(imports=300, stuck=0))
    target = finished(account, 200)
    completed = parse_timestamp((account.store.get(target) or {})["completed_at"])
    account.store.set_field(target, completed_at=completed + timedelta(seconds=7))
    assert account.differences() != []
    summary = account.sync(pipeline, full_refresh=True)
    assert (summary.new, summary.updated) == (0, 0)
    assert imports_loaded(pipeline) == 1
    assert account.differences() == []


def _created_at_edited(account: Account) -> int:
    target = finished(account, 100)
    set_earlier = "SET created_at = created_at - INTERVAL '1 hour'"
    execute(account, f"UPDATE resend.contact_imports {set_earlier} WHERE id = '{target}'")
    return 1


def _object_dropped(account: Account) -> int:
    drop_views(account)
    execute(account, "ALTER TABLE resend.contact_imports DROP COLUMN object")
    return 300  # added again empty by the run's checks: every row is written again


def _row_copied(account: Account) -> int:
    copy = f"SELECT * FROM resend.contact_imports WHERE id = '{finished(account, 100)}'"
    execute(account, f"INSERT INTO resend.contact_imports {copy}")
    return 1


@pytest.mark.parametrize(
    "person",
    [_created_at_edited, _object_dropped, _row_copied],
    ids=["created_at edited", "column dropped", "row copied"],
)
def test_a_complete_listing_puts_right_what_a_person_did_to_rows(
    make_account: Any, destination_name: str, person: Callable[[Account], int]
) -> None:
    account, pipeline = synced(make_account(imports=300, stuck=0))
    rewritten = person(account)
    summary = account.sync(pipeline, full_refresh=True)
    assert (summary.new, summary.updated) == (0, 0)
    assert imports_loaded(pipeline) == rewritten
    assert account.differences() == []
    rows = account.query(
        "SELECT count(*) FROM {dataset}.contact_imports WHERE object = 'contact_import'"
    )
    assert rows[0][0] == 300
