"""One malformed import never stops the others: it is set aside in
`contact_imports_quarantine` with why, alerted once, and new imports keep arriving; shapes that
are valid but new (an integral float, an object inside `counts`, nanoseconds) load."""

import json
from typing import Any, Dict, List, Optional

import pytest

from .conftest import Account
from .scenarios import (
    NOT_AN_INTEGER,
    alert_count,
    corrupting,
    read_malformed,
    resource_state,
    stuck_import,
    synced,
)


def quarantine(account: Account) -> List[tuple[Any, ...]]:
    return account.query(
        "SELECT import_id, reason, record FROM {dataset}.contact_imports_quarantine"
        " ORDER BY quarantine_key"
    )


def alerts_of(account: Account, rule: str) -> List[str]:
    rows = account.query(
        "SELECT import_id FROM {dataset}.contact_import_alerts WHERE rule = %s ORDER BY 1", rule
    )
    return [row[0] for row in rows]


def only_about(problems: List[str], import_id: str) -> bool:
    return all(import_id in problem for problem in problems)


MALFORMED: Dict[str, tuple[Dict[str, Any], str]] = {
    "counts.total as text": ({"counts": {"total": "12"}}, "counts.total is not an integer: '12'"),
    "counts as a list": ({"counts": [1, 2]}, "counts is not an object: [1, 2]"),
    "unparseable created_at": ({"created_at": "31/10/2026"}, "unparseable created_at"),
    "a number no column holds": ({"weight": 2**63}, "field weight = 9223372036854775808"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_import_is_set_aside_alerted_once_and_the_others_load(
    make_account: Any, destination_name: str, case: str
) -> None:
    change, reason = MALFORMED[case]
    account, pipeline = synced(make_account(imports=300))
    account.store.advance(new=20, seconds=600)
    # a finished import on the first page: the same record whenever it is read again
    target = next(i["id"] for i in account.store.truth() if i["status"] in ("completed", "failed"))
    account.simulator.rewrite = corrupting({target: change})
    summary = account.sync(pipeline)
    assert summary.mode == "incremental" and summary.quarantined == 1
    assert any("set aside 1 malformed record" in line for line in summary.lines())
    [(import_id, why, record)] = quarantine(account)
    assert import_id == target and reason in why
    assert json.loads(record)["id"] == target  # kept as received
    assert alerts_of(account, "malformed") == [target]
    problems = account.differences()
    assert problems and only_about(problems, target)  # every other import is right
    for _ in range(2):  # the same record read again: no new row, no new alert, no failure
        account.store.advance(new=5, seconds=600)
        assert account.sync(pipeline).mode == "incremental"
        assert len(quarantine(account)) == 1 and alerts_of(account, "malformed") == [target]
        assert only_about(account.differences(), target)
    account.simulator.rewrite = None  # Resend fixes the record: it loads
    account.sync(pipeline, full_refresh=True)
    assert account.differences() == []


def test_a_malformed_import_deep_in_history_does_not_stop_new_imports(
    make_account: Any, destination_name: str
) -> None:
    account, pipeline = synced(make_account(imports=300, stuck=0))
    deep = account.store.truth()[-5]["id"]
    account.simulator.rewrite = corrupting({deep: {"counts": {"total": "12"}}})
    account.store.advance(new=8, seconds=600)
    assert account.sync(pipeline, full_refresh_every_days=1e-9).mode == "scheduled full"
    assert [row[0] for row in quarantine(account)] == [deep]
    assert only_about(account.differences(), deep)  # its last good row stays
    account.store.advance(new=8, seconds=600)
    summary = account.sync(pipeline)
    assert summary.mode == "incremental" and summary.new == 8  # the listing was done
    assert only_about(account.differences(), deep)


def test_a_malformed_record_at_the_end_of_every_page_does_not_stop_the_paging(
    account: Account,
) -> None:
    def drop_last_id(path: str, body: Any) -> Any:
        if body.get("data"):
            body["data"][-1]["id"] = None
        return body

    account.simulator.rewrite = drop_last_id
    summary = account.sync()
    # each record without an id is listed again, whole, as the first of the next page
    assert summary.quarantined >= 2
    missing = [p for p in account.differences() if p.startswith("missing import")]
    assert len(missing) == 1  # only the last record of the last page never showed its id
    assert all(row[0] is None for row in quarantine(account))


@pytest.mark.parametrize(
    ("change", "column", "expected"),
    [
        ({"counts": {"total": 10.0, "failed": 2}}, "counts__total", 10),
        (
            {"counts": {"total": 12, "by_reason": {"invalid_email": 3}}},
            "counts__by_reason__invalid_email",
            3,
        ),
        ({"completed_at": "2026-10-31 18:32:37.123456789+00"}, "completed_at", None),
    ],
)
def test_valid_new_shapes_load_as_typed_columns(
    account: Account, change: Dict[str, Any], column: str, expected: Optional[int]
) -> None:
    target = account.store.truth()[40]["id"]
    account.simulator.rewrite = corrupting({target: change})
    summary = account.sync()
    assert summary.quarantined == 0
    [(value,)] = account.query(
        f"SELECT {column} FROM {{dataset}}.contact_imports WHERE id = %s", target
    )
    if column == "completed_at":
        assert value.microsecond == 123456 and value.second == 37  # cut at microseconds
    else:
        assert value == expected
    assert quarantine(account) == [] if _has_quarantine(account) else True


def _has_quarantine(account: Account) -> bool:
    rows = account.query(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = %s",
        "contact_imports_quarantine",
    )
    return bool(rows[0][0])


def test_a_new_import_firstread_malformed_loads_once_resend_corrects_it(
    make_account: Any,
) -> None:
    account, pipeline = synced(make_account(imports=300, stuck=0))
    account.store.advance(new=1, seconds=600)
    target = account.store.truth()[0]["id"]  # queued
    read_malformed(account, target)
    assert account.sync(pipeline).quarantined == 1
    account.store.advance(new=120, seconds=600)  # newer imports push it down
    for _ in range(2):  # every import finishes: the frontier moves to the newest
        account.store.advance(new=0, seconds=600)
        account.sync(pipeline, page_size=20)
    account.simulator.rewrite = None  # Resend corrects it
    account.store.advance(new=3, seconds=600)
    account.sync(pipeline, page_size=20)
    assert account.differences() == []  # observed: missing import <target>


def test_an_open_import_whose_answer_by_id_lacks_an_id_stays_watched(make_account: Any) -> None:
    account: Account = make_account(imports=500, stuck=1)
    pipeline = account.pipeline()
    account.sync(pipeline, page_size=20)
    stuck = stuck_import(account, pipeline)
    account.simulator.rewrite = corrupting({stuck: {"id": 42}})
    assert account.sync(pipeline, page_size=20).quarantined == 1
    assert stuck in resource_state(pipeline)["open_imports"]  # observed: gone from the state
    account.simulator.rewrite = None
    counts = {"total": 5, "created": 5, "updated": 0, "skipped": 0, "failed": 0}
    account.store.set_field(
        stuck, status="completed", completed_at=account.store.now, counts=counts
    )
    account.sync(pipeline, page_size=20)
    assert account.differences() == []


@pytest.mark.parametrize("answered", ["another import's id", "its id in capitals"])
def test_an_answer_by_id_with_another_id_is_set_aside_and_the_import_stays_watched(
    make_account: Any, answered: str
) -> None:
    # before: the row loaded under the other id (or was dropped as that import's, read
    # already), the requested import left the state and stayed open in the table, unwatched
    account: Account = make_account(imports=500, stuck=1)
    pipeline = account.pipeline()
    account.sync(pipeline, page_size=20)
    stuck = stuck_import(account, pipeline)
    other = account.store.truth()[0]["id"] if answered.startswith("another") else stuck.upper()
    account.simulator.rewrite = corrupting({stuck: {"id": other}})
    counts = {"total": 5, "created": 5, "updated": 0, "skipped": 0, "failed": 0}
    account.store.set_field(
        stuck, status="completed", completed_at=account.store.now, counts=counts
    )
    summary = account.sync(pipeline, page_size=20)
    assert summary.quarantined == 1
    assert stuck in resource_state(pipeline)["open_imports"]
    ((import_id, reason, _),) = quarantine(account)
    assert import_id == stuck
    assert reason == f"asked for by id, the API answered with the import {other!r}"
    rows = account.query("SELECT count(*) FROM {dataset}.contact_imports WHERE id = %s", other)
    assert rows[0][0] == (1 if answered.startswith("another") else 0)
    account.simulator.rewrite = None
    account.sync(pipeline, page_size=20)
    assert account.differences() == []


def test_a_first_sync_raises_no_malformed_alert_for_old_records(make_account: Any) -> None:
    account: Account = make_account(imports=300)  # history ends weeks before the run's clock
    old = [item["id"] for item in account.store.truth()[100:103]]
    account.simulator.rewrite = corrupting({import_id: NOT_AN_INTEGER for import_id in old})
    summary = account.sync(account.pipeline())
    assert summary.quarantined == 3
    assert alert_count(account) == 0  # observed: 3 malformed alerts


def test_an_answer_by_id_that_is_set_aside_counts_as_a_request_by_id(make_account: Any) -> None:
    account: Account = make_account(imports=500, stuck=1)
    pipeline = account.pipeline()
    account.sync(pipeline, page_size=20)
    read_malformed(account, stuck_import(account, pipeline))
    summary = account.sync(pipeline, page_size=20)
    assert account.requests("get") == 1
    assert "(by id 1)" in summary.lines()[-1]


def test_an_open_importread_malformed_and_then_deleted_is_marked_deleted(
    make_account: Any,
) -> None:
    account: Account = make_account(imports=500, stuck=1)
    pipeline = account.pipeline()
    account.sync(pipeline, page_size=20)
    stuck = stuck_import(account, pipeline)
    read_malformed(account, stuck)
    assert account.sync(pipeline, page_size=20).quarantined == 1
    assert stuck in resource_state(pipeline)["open_imports"]  # still watched
    account.store.delete(stuck)
    summaries = [account.sync(pipeline, page_size=20) for _ in range(3)]  # gone_after_runs
    assert [summary.deleted for summary in summaries] == [0, 0, 1]
    assert account.differences() == []
