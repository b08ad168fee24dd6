"""Every change the table receives also reaches the history, the alert rules and the summary,
whichever path found it: a listing, a late arrival below the newest import seen, a complete
listing deep in history, a GET by id (also of an id that needs URL-encoding)."""

from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Dict, List

from resend_imports.records import parse_timestamp

from .conftest import Account
from .scenarios import corrupting, synced


def history_of(account: Account, import_id: str) -> List[tuple[Any, ...]]:
    return account.query(
        "SELECT previous_status, status FROM {dataset}.contact_import_status_history"
        " WHERE import_id = %s ORDER BY observed_at",
        import_id,
    )


def rules_of(account: Account, import_id: str) -> List[str]:
    rows = account.query(
        "SELECT rule FROM {dataset}.contact_import_alerts WHERE import_id = %s", import_id
    )
    return [row[0] for row in rows]


FAILED_COUNTS = {"total": 10, "created": 0, "updated": 0, "skipped": 0, "failed": 10}


def test_an_import_visible_late_is_new_in_history_alerts_and_summary(
    make_account: Any, destination_name: str
) -> None:
    account, pipeline = synced(make_account(imports=300, stuck=0, history_end=datetime.now(UTC)))
    newest = parse_timestamp(account.store.truth()[0]["created_at"])  # seen by that sync
    late = account.store.insert(newest - timedelta(seconds=1), "failed", FAILED_COUNTS)
    summary = account.sync(pipeline)
    assert summary.mode == "incremental"
    assert summary.new == 1 and summary.rows - summary.new - summary.updated >= 0
    assert history_of(account, late) == [(None, "failed")]
    assert rules_of(account, late) == ["failed"]
    assert account.differences() == []


def test_a_terminal_import_corrected_deep_in_history_is_history_and_alert(
    make_account: Any, destination_name: str
) -> None:
    account, pipeline = synced(make_account(imports=400, stuck=0, history_end=datetime.now(UTC)))
    deep = next(  # completed with few failed rows: no alert until corrected
        i
        for i in reversed(account.store.truth())
        if i["status"] == "completed" and i["counts"]["failed"] < 0.01 * i["counts"]["total"]
    )
    counts = {"total": 100, "created": 50, "updated": 0, "skipped": 0, "failed": 50}
    account.store.set_field(deep["id"], counts=counts)
    summary = account.sync(pipeline, full_refresh=True)
    assert (summary.new, summary.updated) == (0, 1)
    assert history_of(account, deep["id"])[-1] == ("completed", "completed")
    assert rules_of(account, deep["id"]) == ["high_failure_rate"]
    assert account.differences() == []
    again = account.sync(pipeline, full_refresh=True)  # seen once: not again
    assert (again.new, again.updated, again.alerts_raised) == (0, 0, 0)


def test_an_id_that_needs_url_encoding_is_fetched_by_id(account: Account) -> None:
    oldest = parse_timestamp(account.store.truth()[-1]["created_at"])
    odd = account.store.insert(
        oldest - timedelta(hours=1), "in_progress", import_id="imp/0?x#1 %2F"
    )
    pipeline = account.pipeline()
    account.sync(pipeline)  # an open import deep in history: watched by id from now on
    account.store.set_field(odd, status="completed", completed_at=account.store.now)
    summary = account.sync(pipeline)
    assert (summary.refreshed_by_id, summary.not_found, summary.deleted) == (1, 0, 0)
    assert history_of(account, odd)[-1] == ("in_progress", "completed")
    assert account.differences() == []


ODD_IDS = [
    "50%s",
    "o'brien",
    "a/b?c#d",
    "ünï-cødé-✓",
    "a|completed|1|1|0|0|0",
    " padded ",
    "x" * 300,
    "UPPER",
    "upper",
]


def test_odd_import_ids_load_refresh_and_delete_like_any_other(
    make_account: Any, destination_name: str
) -> None:
    account, pipeline = synced(make_account(imports=200, stuck=0))
    for offset, import_id in enumerate(ODD_IDS, start=1):
        account.store.insert(account.store.now + timedelta(seconds=offset), import_id=import_id)
    assert account.sync(pipeline).new == len(ODD_IDS)
    account.store.advance(new=0, seconds=600)
    account.store.advance(new=0, seconds=600)  # they finish: refreshed through the state
    account.sync(pipeline)
    assert account.differences() == []
    for import_id in ODD_IDS[:4]:  # GET by id with the id escaped in the path
        account.store.delete(import_id)
    assert account.sync(pipeline, full_refresh=True).deleted == 4
    assert account.differences() == []


def _in_offset(text: str, hours: float) -> str:
    """The same instant written with another UTC offset (e.g. +05:30)."""
    from resend_imports.records import parse_timestamp

    moment = parse_timestamp(text).astimezone(timezone(timedelta(hours=hours)))
    return moment.isoformat(sep=" ")


def test_the_same_instants_in_other_offsets_load_equal_and_change_nothing(
    make_account: Any,
) -> None:
    account: Account = make_account(imports=300)
    pipeline = account.pipeline()
    offsets = (5.5, -3, 14, -9.5)
    targets: Dict[str, Any] = {}
    for position, item in enumerate(account.store.truth()[::7]):
        hours = offsets[position % len(offsets)]
        change = {"created_at": _in_offset(item["created_at"], hours)}
        if item["completed_at"]:
            change["completed_at"] = _in_offset(item["completed_at"], -hours)
        targets[item["id"]] = change
    account.simulator.rewrite = corrupting(targets)
    account.sync(pipeline)  # columnar intake
    assert account.differences() == []
    account.store.advance(new=5, seconds=600)
    account.sync(pipeline)  # row intake
    assert account.differences() == []
    again = account.sync(pipeline, full_refresh=True)
    assert (again.new, again.updated, again.quarantined) == (0, 0, 0)
