"""Records set aside: an import Resend returned that cannot be loaded as typed.

A record with no id, a timestamp in no format Resend uses, a count that is not a whole
number, or a number no 64-bit column holds would fail the load, and with it every later
run that reads it again. Instead it is kept as received, in `contact_imports_quarantine`
(its JSON text, the import id when it has one, why, and when it was first seen), the other
imports load, the run says how many it set aside, and the `malformed` alert rule raises an
alert. The table is insert-only on `quarantine_key` (the import and a hash of the record):
the same malformed record read again by a later run is the same row; a corrected record
loads into `contact_imports` as usual.
"""

import hashlib
import json
from datetime import datetime
from typing import Any, Dict, Optional

from dlt.sources import DltResource

from .errors import MalformedImportError
from .history import add_insert_only_table
from .records import parse_timestamp

QUARANTINE_TABLE = "contact_imports_quarantine"

QUARANTINE_COLUMNS: Any = {
    "quarantine_key": {"data_type": "text", "nullable": False},
    "import_id": {"data_type": "text"},
    "reason": {"data_type": "text", "nullable": False},
    "record": {"data_type": "text", "nullable": False},
    "created_at": {"data_type": "timestamp", "timezone": True},  # when it parses
    "seen_at": {"data_type": "timestamp", "timezone": True, "nullable": False},
}


def add_quarantine_table(resource: DltResource) -> DltResource:
    """Declares the quarantine table on the resource that feeds it (one load package)."""
    return add_insert_only_table(resource, QUARANTINE_TABLE, "quarantine_key", QUARANTINE_COLUMNS)


def quarantine_row(
    raw: Any, error: MalformedImportError, seen_at: datetime, requested_id: Optional[str] = None
) -> Dict[str, Any]:
    """The record as received, keyed by its import (the id it was fetched by, when its own
    is missing) and a hash of its text."""
    record = json.dumps(raw, sort_keys=True, default=str, separators=(",", ":"))
    import_id = error.import_id
    if import_id is None and isinstance(raw, dict) and isinstance(raw.get("id"), str):
        import_id = raw["id"] or None
    import_id = import_id or requested_id
    digest = hashlib.sha256(record.encode()).hexdigest()[:16]
    return {
        "quarantine_key": f"{import_id or '(no id)'}|{digest}",
        "import_id": import_id,
        "reason": error.reason,
        "record": record,
        "created_at": created_at_of(raw),
        "seen_at": seen_at,
    }


def created_at_of(raw: Any) -> Optional[datetime]:
    """The creation time of a malformed record, when it has one that parses."""
    try:
        return parse_timestamp(raw["created_at"]) if isinstance(raw, dict) else None
    except (KeyError, ValueError):
        return None
