"""Turning one ContactImport from the API into one row of `contact_imports`."""

import json
import re
from datetime import datetime
from functools import lru_cache
from typing import Any, Dict, Mapping, Optional

from dlt.common.normalizers.naming.snake_case import NamingConvention

from .errors import MalformedImportError
from .settings import COUNT_FIELDS, KNOWN_FIELDS, TERMINAL_STATUSES

# PostgreSQL-style (`2026-05-15 18:32:37.823+00`) or ISO (`2026-05-15T18:32:37.823Z`), with
# any number of fractional digits: beyond microseconds (a nanosecond clock) they are cut off.
_DATE_TIME = r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}"
_OFFSET = r"(Z|[+-]\d{2}(:?\d{2})?)"
_TIMESTAMP = re.compile(rf"({_DATE_TIME})(\.\d+)?{_OFFSET}")
# What Arrow's own cast reads (at most microseconds); anything else goes row by row.
MICROSECOND_TIMESTAMP_PATTERN = rf"{_DATE_TIME}(\.\d{{1,6}})?{_OFFSET}"

Row = Dict[str, Any]

# Columns of the table a field Resend adds must never land in: dlt names columns in snake
# case, so `completedAt`, `Status` or `counts.Total` would otherwise overwrite a known column
RESERVED_COLUMNS: frozenset[str] = frozenset(
    {
        "id",
        "object",
        "status",
        "created_at",
        "completed_at",
        "deleted_at",
        *(f"counts__{name}" for name in COUNT_FIELDS),
        "_dlt_load_id",
        "_dlt_id",
    }
)
COLLISION_PREFIX = "api__"
_NAMING = NamingConvention()


@lru_cache(maxsize=4096)
def column_name(field: str) -> str:
    """The column dlt makes of a field name (its default naming, snake case)."""
    return _NAMING.normalize_path(field)


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def parse_timestamp(value: str) -> datetime:
    """Parses a Resend timestamp into a timezone-aware datetime (microsecond precision).

    Raises:
        ValueError: the value is not a timestamp with an offset in a format Resend uses.
    """
    match = _TIMESTAMP.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(value)
    fraction = (match.group(2) or "")[:7]  # the dot and six digits
    return datetime.fromisoformat(f"{match.group(1)}{fraction}{match.group(3)}")


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
        raise MalformedImportError(
            import_id,
            f"unparseable {field} {value!r} (expected e.g. '2026-05-15 18:32:37.823+00')",
        ) from None


def _count_field(counts: Mapping[str, Any], field: str, import_id: str) -> Optional[int]:
    """A count as a whole number: an integral float (`10.0`, as some serializers write
    integers) is one; text, booleans and fractions are not."""
    value = counts.get(field)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedImportError(import_id, f"counts.{field} is not an integer: {value!r}")
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise MalformedImportError(import_id, f"counts.{field} = {value} does not fit 64 bits")
    return value


def to_row(raw: Any) -> Row:
    """Validates one ContactImport and flattens it into a row.

    Timestamps become timezone-aware datetimes and `counts` becomes `counts__*` columns
    (all None when `counts` is absent). Unknown fields become new columns: scalars as they
    are, objects flattened into `field__key` columns, lists as JSON text; the same holds for
    keys Resend may add inside `counts` (`counts.by_reason` becomes `counts__by_reason__*`).

    Raises:
        MalformedImportError: not an object, no id, an unparseable timestamp, one of the five
            counts not a whole number, or a whole number no 64-bit column holds.
    """
    if not isinstance(raw, dict):
        raise MalformedImportError(None, f"a contact import is not a JSON object: {_short(raw)}")
    import_id = raw.get("id")
    if not isinstance(import_id, str) or not import_id:
        raise MalformedImportError(None, f"a contact import has no id: {_short(raw)}")

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
        raise MalformedImportError(import_id, f"counts is not an object: {_short(counts)}")
    for field in COUNT_FIELDS:
        row[f"counts__{field}"] = _count_field(counts, field, import_id)
    for field in counts.keys() - set(COUNT_FIELDS):
        _flatten_unknown(f"counts__{field}", counts[field], row, import_id)
    return row


def _short(value: Any) -> str:
    """A value as one short line of JSON, for a reason that names what was wrong."""
    try:
        text = json.dumps(value, default=str)
    except ValueError:
        text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _flatten_unknown(name: str, value: Any, row: Row, import_id: str) -> None:
    """A field Resend adds later, as flat columns whichever way the run hands rows to dlt:
    an object becomes `name__key` columns, a list one column of JSON text.

    Raises:
        MalformedImportError: a whole number no destination's integer column holds.
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
        raise MalformedImportError(
            import_id,
            f"field {name.replace('__', '.')} = {value} does not fit a 64-bit integer column",
        )
    else:
        row[_free_name(name, row)] = value


def _free_name(name: str, row: Row) -> str:
    """`name`, or `api__<column>` when its column is one of the table's own or one another
    field of this row already takes (`fooBar` and `foo_bar`)."""
    column = column_name(name)
    taken = column in RESERVED_COLUMNS or any(
        column_name(other) == column for other in row if other != name
    )
    return f"{COLLISION_PREFIX}{column}" if taken else name


def fingerprint(row: Mapping[str, Any]) -> str:
    """What can change on an import that a sync records (status and counts), as one
    comparable string: `status|total|created|updated|skipped|failed`, empty for NULL.

    A run compares it with the fingerprint of the row the table holds (`known`); the history
    keys a row by the import's id and this string.
    """
    counts = (
        "" if row.get(f"counts__{f}") is None else str(row[f"counts__{f}"]) for f in COUNT_FIELDS
    )
    return "|".join([row.get("status") or "", *counts])


def fingerprint_parts(value: str) -> tuple[str, Dict[str, Optional[int]]]:
    """The status and the counts a fingerprint holds (its inverse, for the alert rules)."""
    status, *counts = value.split("|")
    return status, {
        field: int(count) if count else None
        for field, count in zip(COUNT_FIELDS, counts, strict=False)
    }
