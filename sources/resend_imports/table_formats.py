"""The open table formats a run can write on dlt's `filesystem` destination: Delta and
Iceberg (`table_format`, a setting of the source under `[sources.resend_imports]`).

dlt merges into these formats by `upsert` only (its `delete-insert` needs SQL), on the same
key: the table keeps one row per import and account. The history, alerts and quarantine
tables stay insert-only, which both formats support. Every table of the source takes the
format, so that all of them are readable by the same engines.
"""

from typing import Optional, Tuple

from dlt.sources import DltResource

from .alerts import ALERTS_TABLE
from .errors import ResendConfigError
from .quarantine import QUARANTINE_TABLE
from .settings import HISTORY_TABLE

TABLE_FORMATS: Tuple[str, ...] = ("delta", "iceberg")
_VARIANTS = (HISTORY_TABLE, ALERTS_TABLE, QUARANTINE_TABLE)


def check_table_format(table_format: Optional[str]) -> Optional[str]:
    """The format in lower case, or None for the destination's own files."""
    if table_format is None or table_format == "":
        return None
    chosen = str(table_format).lower()
    if chosen not in TABLE_FORMATS:
        raise ResendConfigError(
            f"table_format must be one of {', '.join(TABLE_FORMATS)}, not {table_format!r}"
        )
    return chosen


def apply_table_format(resource: DltResource, table_format: Optional[str]) -> DltResource:
    """Every table of `resource` in `table_format` (none: left as declared)."""
    if table_format is None:
        return resource
    resource.apply_hints(
        table_format=table_format,  # type: ignore[arg-type]
        write_disposition={"disposition": "merge", "strategy": "upsert"},
    )
    for table in _VARIANTS:
        resource.apply_hints(
            table_name=table,
            table_format=table_format,  # type: ignore[arg-type]
            create_table_variant=True,
        )
    return resource
