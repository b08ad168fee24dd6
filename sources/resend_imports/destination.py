"""What the destination already holds for this source, read by the run that loads into it.

The incremental state that counts is the one committed with the table (dlt loads it in the
same package as the rows); the local copy in the pipeline's working folder can be ahead of
it, behind it, or belong to another dataset. A complete listing also reads the ids of the
imports the table holds, to find those it no longer returns (read in chunks of ids),
and a run reads the last rows of the imports it concludes are gone, to mark them deleted. A
table that cannot be read (a destination without SQL, files DuckDB cannot scan) is logged
and not reconciled; the run goes on.

Everything here goes through the pipeline that runs the source (dlt's active pipeline context),
so the source keeps these guarantees in any dlt pipeline. A destination without SQL or
without state sync answers "unknown", and the run then behaves as dlt alone would.
"""

import logging
from typing import Any, Dict, Iterable, List, Mapping, NamedTuple, Optional

import dlt
from dlt.common.configuration.container import Container
from dlt.common.destination.client import WithStateSync
from dlt.common.destination.exceptions import (
    DestinationException,
    DestinationUndefinedEntity,
    SqlClientNotAvailable,
)
from dlt.common.pipeline import PipelineContext
from dlt.pipeline.state_sync import load_pipeline_state_from_destination

from .records import Row
from .settings import SOURCE_NAME, TABLE_NAME

_DLT_COLUMNS = ("_dlt_load_id", "_dlt_id")
_ROWS_PER_QUERY = 500
_IDS_PER_CHUNK = 100_000

logger = logging.getLogger("resend_imports")

ResourceState = Dict[str, Any]


def running_pipeline() -> Optional[dlt.Pipeline]:
    """The pipeline that runs the source, or None when it runs outside one (a test, a list)."""
    context = Container()[PipelineContext]
    if not context.is_active():
        return None
    pipeline: dlt.Pipeline = context.pipeline()  # type: ignore[assignment]
    return pipeline if pipeline.destination is not None else None


def resource_state_of(pipeline_state: Mapping[str, Any]) -> ResourceState:
    """The `contact_imports` resource state inside a whole dlt pipeline state."""
    sources = pipeline_state.get("sources", {})
    state: ResourceState = sources.get(SOURCE_NAME, {}).get("resources", {}).get(TABLE_NAME, {})
    return state


class Committed(NamedTuple):
    """What the destination holds of this source's state."""

    known: bool  # False: the destination keeps no state (no state sync there)
    state: ResourceState  # empty when the dataset holds none
    empty: bool  # no dataset or state table at all: no table to read either


def committed_state(pipeline: dlt.Pipeline) -> Committed:
    """The resource state committed in the destination with the data: one query."""
    try:
        with pipeline.destination_client() as client:
            if not isinstance(client, WithStateSync):
                return Committed(False, {}, False)
            stored = load_pipeline_state_from_destination(pipeline.pipeline_name, client)
    except DestinationUndefinedEntity:  # no dataset, or no state table yet
        return Committed(True, {}, True)
    return Committed(True, resource_state_of(stored or {}), False)


def deleted_ids(pipeline: dlt.Pipeline) -> Optional[Dict[str, str]]:
    """Ids of the table's rows marked deleted, with when; None when the table does not exist
    or cannot be read here, e.g. a table no run of this version has written yet (it has no
    `deleted_at`): then a complete listing does not reconcile it either."""
    try:
        with pipeline.sql_client() as client:
            table = client.make_qualified_table_name(TABLE_NAME)
            rows = client.execute_sql(
                f"SELECT id, deleted_at FROM {table} WHERE deleted_at IS NOT NULL"
            )
    except DestinationUndefinedEntity:
        return None
    except (DestinationException, SqlClientNotAvailable) as exc:
        _cannot_read(pipeline, exc)
        return None
    return {row[0]: _isoformat(row[1]) for row in rows or []}


def row_count(pipeline: dlt.Pipeline) -> Optional[int]:
    """How many rows the table holds (for a complete listing's progress), or None."""
    try:
        with pipeline.sql_client() as client:
            table = client.make_qualified_table_name(TABLE_NAME)
            rows = client.execute_sql(f"SELECT count(*) FROM {table}")
    except (DestinationException, SqlClientNotAvailable):
        return None
    return int(rows[0][0]) if rows else None


def unlisted_live_ids(pipeline: dlt.Pipeline, listed: Any) -> List[str]:
    """Ids of the table's live rows that the Arrow array `listed` does not hold, read in
    chunks so that memory stays flat whatever the size of the table."""
    from . import arrow

    unlisted: List[str] = []
    try:
        with pipeline.sql_client() as client:
            table = client.make_qualified_table_name(TABLE_NAME)
            query = f"SELECT id FROM {table} WHERE deleted_at IS NULL"
            with client.execute_query(query) as cursor:
                for chunk in cursor.iter_fetch(_IDS_PER_CHUNK):
                    unlisted += arrow.not_in([row[0] for row in chunk], listed)
    except (DestinationException, SqlClientNotAvailable) as exc:
        _cannot_read(pipeline, exc)
        return []
    return unlisted


def last_rows(pipeline: dlt.Pipeline, ids: Iterable[str]) -> List[Row]:
    """The table's rows of these imports as they are now, without dlt's own columns."""
    wanted = list(ids)
    found: List[Row] = []
    try:
        with pipeline.sql_client() as client:
            table = client.make_qualified_table_name(TABLE_NAME)
            for start in range(0, len(wanted), _ROWS_PER_QUERY):
                chunk = wanted[start : start + _ROWS_PER_QUERY]
                marks = ", ".join(["%s"] * len(chunk))
                with client.execute_query(
                    f"SELECT * FROM {table} WHERE id IN ({marks})", *chunk
                ) as cursor:
                    names = [column[0].lower() for column in cursor.description]
                    for values in cursor.fetchall():
                        row = dict(zip(names, values, strict=True))
                        found.append({k: v for k, v in row.items() if k not in _DLT_COLUMNS})
    except (DestinationException, SqlClientNotAvailable) as exc:
        _cannot_read(pipeline, exc)
        return []
    return found


def _isoformat(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _cannot_read(pipeline: dlt.Pipeline, exc: BaseException) -> None:
    if isinstance(exc, DestinationUndefinedEntity):
        return
    logger.warning(
        "cannot read %s.%s on this destination (%s): deletions are not reconciled in this run",
        pipeline.dataset_name,
        TABLE_NAME,
        type(exc).__name__,
    )
