"""Parsing and flattening of one ContactImport."""

from datetime import UTC, datetime, timedelta
from typing import Any, Dict

import pytest

from resend_imports.errors import ResendDataError
from resend_imports.records import fingerprint, is_terminal, parse_timestamp, to_row

UTC = UTC


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-05-15 18:32:37+00", datetime(2026, 5, 15, 18, 32, 37, tzinfo=UTC)),
        ("2026-05-15 18:32:37.823+00", datetime(2026, 5, 15, 18, 32, 37, 823000, tzinfo=UTC)),
        ("2026-05-15 18:32:37.823412+00", datetime(2026, 5, 15, 18, 32, 37, 823412, tzinfo=UTC)),
        ("2026-05-15T18:32:37.823Z", datetime(2026, 5, 15, 18, 32, 37, 823000, tzinfo=UTC)),
        ("2026-05-15T18:32:37+00:00", datetime(2026, 5, 15, 18, 32, 37, tzinfo=UTC)),
        (
            "2026-05-15 20:32:37.5+02:00",
            datetime(2026, 5, 15, 18, 32, 37, 500000, tzinfo=UTC),
        ),
        # a nanosecond clock: cut at microseconds
        ("2026-05-15 18:32:37.123456789+00", datetime(2026, 5, 15, 18, 32, 37, 123456, tzinfo=UTC)),
    ],
)
def test_parse_timestamp_accepts_resend_formats(text: str, expected: datetime) -> None:
    parsed = parse_timestamp(text)
    assert parsed == expected
    assert parsed.utcoffset() is not None


@pytest.mark.parametrize(
    "text",
    [
        "2026-05-15",  # no time
        "2026-05-15 18:32:37",  # no offset: ambiguous
        "15/05/2026 18:32:37+00",
        "2026-13-15 18:32:37+00",  # month 13
        "",
        "yesterday",
    ],
)
def test_parse_timestamp_rejects_other_text(text: str) -> None:
    with pytest.raises(ValueError):
        parse_timestamp(text)


def _raw(**changes: Any) -> Dict[str, Any]:
    raw: Dict[str, Any] = {
        "object": "contact_import",
        "id": "479e3145-dd38-476b-932c-529ceb705947",
        "status": "completed",
        "created_at": "2026-05-15 18:32:37.823+00",
        "completed_at": "2026-05-15 18:33:42.916+00",
        "counts": {"total": 1200, "created": 800, "updated": 300, "skipped": 75, "failed": 25},
    }
    raw.update(changes)
    return raw


def test_to_row_flattens_counts_and_parses_timestamps() -> None:
    row = to_row(_raw())
    assert row["created_at"] == datetime(2026, 5, 15, 18, 32, 37, 823000, tzinfo=UTC)
    assert row["completed_at"] - row["created_at"] == timedelta(seconds=65, microseconds=93000)
    assert (row["counts__total"], row["counts__failed"]) == (1200, 25)
    assert "counts" not in row


def test_to_row_absent_counts_are_null_columns() -> None:
    raw = _raw(status="queued", completed_at=None)
    del raw["counts"]
    row = to_row(raw)
    assert row["completed_at"] is None
    assert all(row[f"counts__{f}"] is None for f in ("total", "created", "skipped"))


def test_to_row_keeps_unknown_fields_as_columns() -> None:
    row = to_row(_raw(segment_id="seg_1", counts={"total": 3, "pending": 2}))
    assert row["segment_id"] == "seg_1"
    assert row["counts__pending"] == 2
    assert row["counts__created"] is None


def test_to_row_flattens_unknown_nested_fields() -> None:
    row = to_row(_raw(source={"kind": "csv", "file": {"rows": 3}}, tags=["a", "b"], empty={}))
    assert row["source__kind"] == "csv" and row["source__file__rows"] == 3
    assert row["tags"] == '["a", "b"]'
    assert "source" not in row and "empty" not in row


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"id": None}, "has no id"),
        ({"created_at": "last tuesday"}, "unparseable created_at 'last tuesday'"),
        ({"created_at": None}, "unparseable created_at None"),
        ({"completed_at": "2026-05-15"}, "unparseable completed_at '2026-05-15'"),
        ({"counts": {"total": "12"}}, "counts.total is not an integer: '12'"),
        ({"counts": {"total": 1.5}}, "counts.total is not an integer"),
        ({"counts": {"total": 2.0**64}}, "counts.total = 18446744073709551616 does not fit"),
        ({"counts": {"failed": True}}, "counts.failed is not an integer"),
        ({"counts": [1, 2]}, "counts is not an object"),
    ],
)
def test_to_row_rejects_bad_imports_naming_id_field_and_value(
    changes: Dict[str, Any], message: str
) -> None:
    with pytest.raises(ResendDataError) as failure:
        to_row(_raw(**changes))
    text = str(failure.value)
    assert message in text
    assert "\n" not in text
    if changes.get("id", "x") is not None:
        assert "479e3145-dd38-476b-932c-529ceb705947" in text


def test_to_row_takes_integral_floats_and_objects_inside_counts() -> None:
    row = to_row(_raw(counts={"total": 10.0, "failed": 1, "by_reason": {"bounced": 1}}))
    assert row["counts__total"] == 10 and isinstance(row["counts__total"], int)
    assert row["counts__by_reason__bounced"] == 1


def test_to_row_rejects_non_objects() -> None:
    with pytest.raises(ResendDataError, match="not a JSON object"):
        to_row(["not", "an", "import"])


def test_terminal_statuses() -> None:
    assert is_terminal("completed") and is_terminal("failed")
    assert not is_terminal("queued") and not is_terminal("in_progress")
    assert not is_terminal("paused")  # unknown: refreshed until it becomes terminal


def test_fingerprint_changes_with_what_can_change() -> None:
    open_row = to_row(_raw(status="in_progress", completed_at=None, counts=None))
    done_row = to_row(_raw())
    assert fingerprint(open_row) != fingerprint(done_row)
    assert fingerprint(done_row) == fingerprint(to_row(_raw()))
