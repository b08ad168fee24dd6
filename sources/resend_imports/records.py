"""Turning one ContactImport from the API into one row of `contact_imports`."""

import json
import re
from datetime import datetime
from typing import Any, Dict, Mapping, Optional

from .errors import ResendDataError
from .settings import COUNT_FIELDS, KNOWN_FIELDS, TERMINAL_STATUSES

# PostgreSQL-style (`2026-05-15 18:32:37.823+00`) or ISO (`2026-05-15T18:32:37.823Z`).
TIMESTAMP_PATTERN = r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}(:?\d{2})?)"
_TIMESTAMP = re.compile(TIMESTAMP_PATTERN)

Row = Dict[str, Any]

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def parse_timestamp(value: str) -> datetime:
    """Parses a Resend timestamp into a timezone-aware datetime.

    Raises:
        ValueError: the value is not a timestamp with an offset in a format Resend uses.
    """
    if not isinstance(value, str) or not _TIMESTAMP.fullmatch(value):
        raise ValueError(value)
    return datetime.fromisoformat(value)


def is_terminal(status: Any) -> bool:
    """Whether an import can no longer change. Unknown statuses are treated as open."""
    return status in TERMINAL_STATUSES


def _timestamp_field(raw: Mapping[str, Any], field: str, import_id: str) -> Optional[datetime]:
    value = raw.get(field)
    if value is None and field != "created_at":
        return None
    try:
        return parse_timestamp(value)  # type: ignore[arg-type]
    except ValueError:
        raise ResendDataError(
            f"import {import_id}: unparseable {field} {value!r}"
            " (expected e.g. '2026-05-15 18:32:37.823+00')"
        ) from None


def _count_field(counts: Mapping[str, Any], field: str, import_id: str) -> Optional[int]:
    value = counts.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ResendDataError(f"import {import_id}: counts.{field} is not an integer: {value!r}")
    return value


def to_row(raw: Any) -> Row:
    """Validates one ContactImport and flattens it into a row.

    Timestamps become timezone-aware datetimes and `counts` becomes `counts__*` columns
    (all None when `counts` is absent). Unknown fields become new columns: scalars as they
    are, objects flattened into `field__key` columns, lists as JSON text.

    Raises:
        ResendDataError: no id, an unparseable timestamp, or a count that is not an integer.
    """
    if not isinstance(raw, dict):
        raise ResendDataError(f"a contact import is not a JSON object: {str(raw)[:80]!r}")
    import_id = raw.get("id")
    if not isinstance(import_id, str) or not import_id:
        raise ResendDataError(f"a contact import has no id: {str(raw)[:120]!r}")

    row: Row = {}
    for key, value in raw.items():
        if key in KNOWN_FIELDS:
            if key != "counts":
                row[key] = value
        else:
            _flatten_unknown(key, value, row, import_id)
    row["created_at"] = _timestamp_field(raw, "created_at", import_id)
    row["completed_at"] = _timestamp_field(raw, "completed_at", import_id)

    counts = raw.get("counts")
    if counts is None:
        counts = {}
    elif not isinstance(counts, dict):
        raise ResendDataError(f"import {import_id}: counts is not an object: {counts!r}")
    for field in COUNT_FIELDS:
        row[f"counts__{field}"] = _count_field(counts, field, import_id)
    for field in counts.keys() - set(COUNT_FIELDS):
        row[f"counts__{field}"] = _count_field(counts, field, import_id)
    return row


def _flatten_unknown(name: str, value: Any, row: Row, import_id: str) -> None:
    """A field Resend adds later, as flat columns whichever way the run hands rows to dlt:
    an object becomes `name__key` columns, a list one column of JSON text.

    Raises:
        ResendDataError: a whole number no destination's integer column holds.
    """
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten_unknown(f"{name}__{key}", inner, row, import_id)
    elif isinstance(value, list):
        row[name] = json.dumps(value)
    elif (
        isinstance(value, int)
        and not isinstance(value, bool)
        and not _INT64_MIN <= value <= _INT64_MAX
    ):
        raise ResendDataError(
            f"import {import_id}: field {name.replace('__', '.')} = {value} does not fit a"
            " 64-bit integer column; no table was changed"
        )
    else:
        row[name] = value


def fingerprint(row: Mapping[str, Any]) -> str:
    """What can change on an open import (status and counts), as one comparable string.

    The state keeps it for each open import; `history.observation_key` (and its columnar
    twin `history.history_table`) key a history row by the import's id and this string.
    """
    counts = (
        "" if row.get(f"counts__{f}") is None else str(row[f"counts__{f}"]) for f in COUNT_FIELDS
    )
    return "|".join([row.get("status") or "", *counts])
