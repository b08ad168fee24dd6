"""The columnar pass over a batch gives the very table `records.to_row` gives row by row, and
the history's two keys (of a listed batch, of a deleted row) agree."""

from datetime import UTC, datetime
from typing import Any, Dict, List

import pytest

from pipelines.simulator import ImportStore
from sources.resend_imports import COLUMNS, arrow
from sources.resend_imports.history import Observations, history_table, observation_key
from sources.resend_imports.records import to_row


def _listing(store: ImportStore) -> List[Dict[str, Any]]:
    items: List[Dict[str, Any]] = []
    after = None
    while True:
        page, has_more = store.list(100, after)
        items += page
        if not has_more:
            return items
        after = page[-1]["id"]


def _row_by_row(items: List[Dict[str, Any]]) -> Any:
    return arrow.to_arrow([to_row(item) for item in items], COLUMNS)


def test_columnar_table_equals_row_by_row_on_every_timestamp_style_and_state() -> None:
    store = ImportStore(3000, seed=7, stuck=5)
    store.advance(new=200, seconds=600)  # open imports with and without counts
    items = _listing(store)
    for start in range(0, len(items), 1000):
        batch = items[start : start + 1000]
        table = arrow.page_table(batch, COLUMNS)
        assert table is not None
        assert table.equals(_row_by_row(batch), check_metadata=True)


def test_offsets_other_than_utc_are_converted_the_same() -> None:
    batch: List[Dict[str, Any]] = [
        {"id": "a", "status": "queued", "created_at": "2026-05-15 20:32:37.5+02:00"},
        {"id": "b", "status": "queued", "created_at": "2026-05-15 13:02:37-0530", "counts": None},
        {"id": "c", "status": "completed", "created_at": "2026-05-15T18:32:37Z",
         "completed_at": "2026-05-15 18:40:00.123456+00", "counts": {"total": 3, "failed": 1}},
    ]  # fmt: skip
    table = arrow.page_table(batch, COLUMNS)
    assert table is not None
    assert table.equals(_row_by_row(batch))


@pytest.mark.parametrize(
    "change",
    [
        {"created_at": "2026-05-15 18:32:37"},  # no offset
        {"created_at": "2026-02-30 18:32:37+00"},  # no such day
        {"created_at": None},
        {"completed_at": "soon"},
        {"counts": {"total": "12"}},
        {"counts": {"total": True}},
        {"counts": {"total": 1.5}},
        {"counts": {"total": 1, "bounced": 2}},  # a count Resend may add
        {"counts": [1, 2]},
        {"id": ""},
        {"id": None},
        {"status": 3},
        {"priority": "high"},  # a field Resend may add
    ],
)
def test_anything_unusual_goes_row_by_row(change: Dict[str, Any]) -> None:
    good = {"id": "a", "status": "completed", "created_at": "2026-05-15 18:32:37+00"}
    assert arrow.page_table([good], COLUMNS) is not None
    assert arrow.page_table([good, {**good, "id": "b", **change}], COLUMNS) is None


def test_non_objects_go_row_by_row() -> None:
    assert arrow.page_table([{"id": "a"}, "not an import"], COLUMNS) is None
    assert arrow.page_table([], COLUMNS) is None


def test_history_table_keys_rows_as_observation_key_does() -> None:
    """A state observed in a listed batch and the same state of a deleted import's last row
    must be keyed alike (the deletion row adds its own suffix)."""
    items: List[Dict[str, Any]] = [
        {"id": "a", "status": "queued", "created_at": "2026-05-15 18:32:37+00"},
        {"id": "b", "status": "in_progress", "created_at": "2026-05-15 18:32:38+00",
         "counts": {"total": 5, "created": 0}},
        {"id": "c", "created_at": "2026-05-15 18:32:39+00"},  # no status
    ]  # fmt: skip
    observations = Observations()
    at = datetime(2026, 5, 15, 19, tzinfo=UTC)
    observations.extend([True] * 3, [None, "queued", None], [at] * 3, ["", "", ""])
    table = arrow.page_table(items, COLUMNS)
    assert table is not None
    history = history_table(table, observations)
    assert history is not None
    keys = history.column("observation_key").to_pylist()
    assert keys == [observation_key(to_row(item)) for item in items]
    assert history.column("previous_status").to_pylist() == [None, "queued", None]
