"""Turning one ContactImport from the API into one row of `contact_imports`.

`to_row` is the only parser of an import, whatever the run does with the row afterwards. It is
written for the shape Resend sends (six known fields, timestamps in one of its formats, whole
counts): a record of that shape costs a few dictionary operations and two C-level timestamp
parses; anything else (a new field, a count as a float, a nanosecond clock) takes the longer
branches of the same function, which also name the field of a malformed value.
"""

import json
import re
from datetime import datetime
from functools import lru_cache
from itertools import product
from typing import Any, Dict, Final, Mapping, Optional

from dlt.common.normalizers.naming.snake_case import NamingConvention

from .errors import MalformedImportError
from .settings import COUNT_FIELDS, KNOWN_FIELDS, TERMINAL_STATUSES

Row = Dict[str, Any]

# The dlt column hints of `contact_imports`: the resource declares them, and runs that hand
# dlt Arrow tables type those tables by them.
COLUMNS: Any = {
    "id": {"data_type": "text", "nullable": False},
    "object": {"data_type": "text"},
    "status": {"data_type": "text"},
    "created_at": {"data_type": "timestamp", "timezone": True},
    "completed_at": {"data_type": "timestamp", "timezone": True},
    **{f"counts__{name}": {"data_type": "bigint"} for name in COUNT_FIELDS},
    # set when the connector concluded that Resend no longer has the import; NULL otherwise
    "deleted_at": {"data_type": "timestamp", "timezone": True},
}

# PostgreSQL-style (`2026-05-15 18:32:37.823+00`) or ISO (`2026-05-15T18:32:37.823Z`), with
# any number of fractional digits: beyond microseconds (a nanosecond clock) they are cut off.
_DATE_TIME = r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}"
_OFFSET = r"(Z|[+-]\d{2}(:?\d{2})?)"
_TIMESTAMP = re.compile(rf"({_DATE_TIME})(\.\d+)?{_OFFSET}")
# The same formats with at most microseconds, as their shapes (ASCII digits all written 0):
# a timestamp of one of these shapes is read by `datetime.fromisoformat` as it is, which is
# what nearly every timestamp costs (a table lookup instead of a regular expression)
_SHAPES: Final = frozenset(
    f"0000-00-00{separator}00:00:00{fraction}{offset}".encode()
    for separator, fraction, offset in product(
        " T",
        ["", *(f".{'0' * digits}" for digits in range(1, 7))],
        ["Z", *(f"{sign}00{minutes}" for sign in "+-" for minutes in ("", "00", ":00"))],
    )
)
_DIGITS_AS_ZERO: Final = bytes.maketrans(b"123456789", b"000000000")

# Columns of the table a field Resend adds must never land in: dlt names columns in snake
# case, so `completedAt`, `Status` or `counts.Total` would otherwise overwrite a known column
RESERVED_COLUMNS: Final = frozenset({*COLUMNS, "_dlt_load_id", "_dlt_id"})
COLLISION_PREFIX: Final = "api__"
_NAMING = NamingConvention()

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_COUNTS: Final = tuple((name, f"counts__{name}") for name in COUNT_FIELDS)
_COUNT_COLUMNS: Final = tuple(column for _, column in _COUNTS)
_COUNT_NAMES: Final = frozenset(COUNT_FIELDS)
_PLAIN_FIELDS: Final = KNOWN_FIELDS - {"counts"}


@lru_cache(maxsize=4096)
def column_name(field: str) -> str:
    """The column dlt makes of a field name (its default naming, snake case)."""
    return _NAMING.normalize_path(field)


def parse_timestamp(value: Any) -> datetime:
    """Parses a Resend timestamp into a timezone-aware datetime (microsecond precision).

    Raises:
        ValueError: the value is not a timestamp with an offset in a format Resend uses.
    """
    if type(value) is str and value.encode().translate(_DIGITS_AS_ZERO) in _SHAPES:
        return datetime.fromisoformat(value)
    match = _TIMESTAMP.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(value)
    fraction = (match.group(2) or "")[:7]  # the dot and six digits
    return datetime.fromisoformat(f"{match.group(1)}{fraction}{match.group(3)}")


def is_terminal(status: Any) -> bool:
    """Whether an import can no longer change. Unknown statuses are treated as open."""
    return status in TERMINAL_STATUSES


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

    if raw.keys() <= KNOWN_FIELDS:
        row: Row = dict(raw)
        row.pop("counts", None)
    else:
        row = {}
        for key, value in raw.items():
            if key in _PLAIN_FIELDS:
                row[key] = value
            elif key != "counts":
                _flatten_unknown(key, value, row, import_id)
    field, value = "created_at", raw.get("created_at")
    try:
        row["created_at"] = parse_timestamp(value)
        field, value = "completed_at", raw.get("completed_at")
        row["completed_at"] = None if value is None else parse_timestamp(value)
    except ValueError:
        raise MalformedImportError(
            import_id,
            f"unparseable {field} {value!r} (expected e.g. '2026-05-15 18:32:37.823+00')",
        ) from None

    counts = raw.get("counts")
    if counts is None:
        counts = {}
    elif not isinstance(counts, dict):
        raise MalformedImportError(import_id, f"counts is not an object: {_short(counts)}")
    for field, column in _COUNTS:
        value = counts.get(field)
        if value is not None and (type(value) is not int or not _INT64_MIN <= value <= _INT64_MAX):
            value = _whole_number(value, field, import_id)
        row[column] = value
    if not counts.keys() <= _COUNT_NAMES:
        for field in counts.keys() - _COUNT_NAMES:
            _flatten_unknown(f"counts__{field}", counts[field], row, import_id)
    return row


def _whole_number(value: Any, field: str, import_id: str) -> int:
    """A count that is not a plain 64-bit int: an integral float (`10.0`, as some serializers
    write integers) is one; text, booleans, fractions and bigger numbers are not."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedImportError(import_id, f"counts.{field} is not an integer: {value!r}")
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise MalformedImportError(import_id, f"counts.{field} = {value} does not fit 64 bits")
    return value


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
    keys an observation by the import's id and this string (`history.observation_key`).
    """
    get = row.get
    total, created, updated, skipped, failed = map(get, _COUNT_COLUMNS)
    return (
        f"{get('status') or ''}|{'' if total is None else total}|"
        f"{'' if created is None else created}|{'' if updated is None else updated}|"
        f"{'' if skipped is None else skipped}|{'' if failed is None else failed}"
    )


def fingerprint_parts(value: str) -> tuple[str, Dict[str, Optional[int]]]:
    """The status and the counts a fingerprint holds (its inverse, for the alert rules)."""
    status, *counts = value.split("|")
    return status, {
        field: int(count) if count else None
        for field, count in zip(COUNT_FIELDS, counts, strict=False)
    }
