"""Comparing `contact_imports` in a destination with what the API returns.

Rows marked deleted (`deleted_at` set) stand for imports Resend no longer has: they must
not be in the API's truth, and every live row must be.
"""

from datetime import UTC, datetime
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import dlt

from resend_imports.records import parse_timestamp
from resend_imports.settings import COUNT_FIELDS, TABLE_NAME

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


def loaded_records(
    pipeline: dlt.Pipeline, account: Optional[str] = None
) -> Tuple[Dict[str, Record], int, List[str]]:
    """The table's live rows (of `account`, or all) as comparable tuples keyed by id, the
    number of rows (deleted ones included), and the ids of the rows marked deleted."""
    with pipeline.sql_client() as client:
        table = client.make_qualified_table_name(TABLE_NAME)
        query = f"SELECT id, deleted_at IS NOT NULL, {', '.join(COMPARED)} FROM {table}"
        if account is not None:
            query += " WHERE account = %s"
        rows = client.execute_sql(query, *([account] if account else [])) or []
    return records_of(rows)


def records_of(rows: Sequence[Sequence[Any]]) -> Tuple[Dict[str, Record], int, List[str]]:
    """`loaded_records` of rows read elsewhere: `id`, whether deleted, then `COMPARED`."""
    records = {row[0]: (row[2], _utc(row[3]), _utc(row[4]), *row[5:]) for row in rows if not row[1]}
    deleted = [row[0] for row in rows if row[1]]
    return records, len(rows), deleted


def differences(
    pipeline: dlt.Pipeline, truth: Iterable[Mapping[str, Any]], account: Optional[str] = None
) -> List[str]:
    """Every way the table (`account`'s rows, or all) differs from the API's truth; empty
    when they are equal."""
    return differences_of(loaded_records(pipeline, account), truth)


def differences_of(
    loaded_rows: Tuple[Dict[str, Record], int, List[str]], truth: Iterable[Mapping[str, Any]]
) -> List[str]:
    """`differences` of rows read by any reader (`records_of`)."""
    expected = expected_records(truth)
    loaded, row_count, deleted = loaded_rows
    problems: List[str] = []
    if row_count != len(loaded) + len(set(deleted)):
        problems.append(f"{row_count - len(loaded) - len(set(deleted))} duplicate rows")
    for import_id in expected.keys() & set(deleted):
        problems.append(f"import {import_id} is marked deleted but Resend has it")
    for missing in expected.keys() - loaded.keys() - set(deleted):
        problems.append(f"missing import {missing}")
    for extra in loaded.keys() - expected.keys():
        problems.append(f"unexpected import {extra}")
    for import_id in expected.keys() & loaded.keys():
        if expected[import_id] != loaded[import_id]:
            problems.append(
                f"import {import_id}: table has {loaded[import_id]}, API has {expected[import_id]}"
            )
    return problems
