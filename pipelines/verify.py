"""Comparing `contact_imports` in a destination with what the API returns."""

from datetime import UTC, datetime
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

import dlt

from sources.resend.records import parse_timestamp
from sources.resend.settings import COUNT_FIELDS, TABLE_NAME

COMPARED = ("status", "created_at", "completed_at", *(f"counts__{f}" for f in COUNT_FIELDS))

Record = Tuple[Any, ...]


def _utc(value: Optional[datetime]) -> Optional[datetime]:
    return None if value is None else value.astimezone(UTC)


def expected_records(truth: Iterable[Mapping[str, Any]]) -> Dict[str, Record]:
    """The API's imports as comparable tuples, keyed by id."""
    records: Dict[str, Record] = {}
    for item in truth:
        counts = item.get("counts") or {}
        completed = item.get("completed_at")
        records[item["id"]] = (
            item["status"],
            _utc(parse_timestamp(item["created_at"])),
            _utc(parse_timestamp(completed)) if completed else None,
            *(counts.get(f) for f in COUNT_FIELDS),
        )
    return records


def loaded_records(pipeline: dlt.Pipeline) -> Tuple[Dict[str, Record], int]:
    """The table's rows as comparable tuples keyed by id, and the number of rows."""
    with pipeline.sql_client() as client:
        table = client.make_qualified_table_name(TABLE_NAME)
        rows = client.execute_sql(f"SELECT id, {', '.join(COMPARED)} FROM {table}") or []
    records = {row[0]: (row[1], _utc(row[2]), _utc(row[3]), *row[4:]) for row in rows}
    return records, len(rows)


def differences(pipeline: dlt.Pipeline, truth: Iterable[Mapping[str, Any]]) -> List[str]:
    """Every way the table differs from the API's truth; empty when they are equal."""
    expected = expected_records(truth)
    loaded, row_count = loaded_records(pipeline)
    problems: List[str] = []
    if row_count != len(loaded):
        problems.append(f"{row_count - len(loaded)} duplicate rows")
    for missing in expected.keys() - loaded.keys():
        problems.append(f"missing import {missing}")
    for extra in loaded.keys() - expected.keys():
        problems.append(f"unexpected import {extra}")
    for import_id in expected.keys() & loaded.keys():
        if expected[import_id] != loaded[import_id]:
            problems.append(
                f"import {import_id}: table has {loaded[import_id]}, API has {expected[import_id]}"
            )
    return problems
