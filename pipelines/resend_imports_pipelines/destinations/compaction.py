"""Delta tables kept compact: every load of an upsert adds files (a small one per run, and
rewrites of those it touched), so a table synced every few minutes would be read from
thousands of small files within days.

After a load, a Delta table holding more than `COMPACT_ABOVE_FILES` files smaller than
`TARGET_FILE_BYTES` is compacted (`optimize.compact`: small files bin-packed into files of
that size, rows unchanged, one new version), then the files no version younger than
`RETENTION_HOURS` references are vacuumed: readers (and time travel) keep a week of versions.
Large files are never rewritten, so the work is bounded by the small files. Iceberg tables
are left as they are: pyiceberg has no compaction yet (Spark's `rewrite_data_files` does it).
"""

import logging
from typing import Any, Dict

import pyarrow as pa
from deltalake import DeltaTable

from resend_imports.checks import WRITTEN_TABLES
from resend_imports.lake import table_format_of

logger = logging.getLogger("resend_imports")

COMPACT_ABOVE_FILES = 2
TARGET_FILE_BYTES = 64 * 1024 * 1024
RETENTION_HOURS = 7 * 24


def small_files(table: DeltaTable) -> int:
    """The table's active data files smaller than `TARGET_FILE_BYTES`."""
    sizes = pa.table(table.get_add_actions(flatten=True)).column("size_bytes").to_pylist()
    return sum(1 for size in sizes if size < TARGET_FILE_BYTES)


def compact(table: DeltaTable) -> Dict[str, Any]:
    """Compacts the table when it holds too many small files, then vacuums what no version
    of the retention period references; the compaction's metrics (none: not needed)."""
    if small_files(table) <= COMPACT_ABOVE_FILES:
        return {}
    metrics: Dict[str, Any] = table.optimize.compact(target_size=TARGET_FILE_BYTES)
    table.vacuum(retention_hours=RETENTION_HOURS, dry_run=False)
    return metrics


def compact_delta_tables(client: Any) -> None:
    """Compacts each Delta table of the source the filesystem `client` holds."""
    for name in WRITTEN_TABLES:
        if table_format_of(client, name) != "delta":
            continue
        metrics = compact(client.load_open_table("delta", name))
        if metrics:
            logger.info(
                "%s compacted: %s files into %s",
                name,
                metrics.get("numFilesRemoved"),
                metrics.get("numFilesAdded"),
            )
