"""How the source reads its destination: each read tried again on a passing fault, and
large results streamed.

A read that fails for a passing reason (a lock held by another process, a lost connection:
dlt's transient exceptions) is tried again a few times, then stops the run in one line
(`DestinationReadError`): a check that did not happen is never taken for a check that passed.
"""

import threading
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, Optional, Tuple, TypeVar

import dlt
from dlt.common.destination.exceptions import (
    DestinationException,
    DestinationTransientException,
    DestinationUndefinedEntity,
    SqlClientNotAvailable,
)
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from .errors import DestinationReadError
from .names import dataset_names
from .settings import TABLE_NAME

READ_ATTEMPTS = 4  # a lock held by a short reader is usually gone within the backoff
# DuckDB's memory while it streams the whole table (a scan needs little: see `stream`)
SCAN_MEMORY_LIMIT = "16MB"
_LIMIT = "SELECT current_setting('memory_limit')"
_DATABASE = (
    "SELECT coalesce(path, database_name) FROM duckdb_databases()"
    " WHERE database_name = current_database()"
)
# the DuckDB databases being scanned: how many scans each, and the limit before the first
_SCANS: Dict[str, Tuple[int, str]] = {}
_SCANS_LOCK = threading.Lock()

T = TypeVar("T")


def retrying(
    pipeline: dlt.Pipeline,
    what: str,
    read: Callable[[], T],
    before_retry: Optional[Callable[[], None]] = None,
) -> T:
    """`read`, tried again on dlt's transient errors (a lock held by another process, a lost
    connection); then a `DestinationReadError` in one line. A missing table or dataset, and
    a destination without SQL, are the caller's to handle."""
    attempts = Retrying(
        stop=stop_after_attempt(READ_ATTEMPTS),
        wait=wait_exponential(multiplier=0.5, max=4),
        retry=retry_if_exception_type(DestinationTransientException),
        before_sleep=lambda _: before_retry() if before_retry else None,
        reraise=True,
    )
    try:
        return attempts(read)
    except (DestinationUndefinedEntity, SqlClientNotAvailable):
        raise
    except DestinationException as exc:
        raise _read_error(pipeline, what, exc) from exc


def stream(sql: Any, query: str, rows: int) -> Iterator[Any]:
    """Batches of a query's rows without holding the result: DuckDB's Arrow record batches
    (nor the pages it read: see `_scan_memory`), a PostgreSQL server-side cursor, or the
    DB-API's `fetchmany` elsewhere. Errors of the native drivers are classified as dlt
    classifies its own."""
    native = sql.native_connection
    driver = type(native).__module__.lstrip("_")
    if not driver.startswith(("psycopg2", "duckdb")):
        with sql.execute_query(query) as cursor:
            yield from cursor.iter_fetch(rows)
        return
    try:
        if driver.startswith("duckdb"):
            with _scan_memory(native):
                for batch in native.sql(query).to_arrow_reader(rows):
                    yield batch
            return
        with sql.begin_transaction():  # a server-side cursor lives in a transaction
            with native.cursor(name="resend_imports_known") as cursor:
                cursor.itersize = rows
                cursor.execute(query)
                while batch := cursor.fetchmany(rows):
                    yield batch
    except Exception as exc:
        if sql.is_dbapi_exception(exc):
            raise sql._make_database_exception(exc) from exc
        raise


@contextmanager
def _scan_memory(native: Any) -> Iterator[None]:
    """DuckDB's memory limit lowered to `SCAN_MEMORY_LIMIT` for a scan, then set back: the
    blocks a scan reads stay cached up to the database's limit, so that what a run keeps
    after streaming the whole table would otherwise grow with the table.

    The limit is the database's, shared by every connection of the process (the accounts'
    threads scan at once): the first scan of a database lowers it and the last one sets
    back what the first found, so that no scan ever takes a lowered limit for the
    configured one."""
    settings = native.cursor()  # of the database: the scan's own result may be unfinished
    try:
        ((database,),) = settings.execute(_DATABASE).fetchall()
        with _SCANS_LOCK:
            if database not in _SCANS:
                ((limit,),) = settings.execute(_LIMIT).fetchall()
                settings.execute(f"SET memory_limit = '{SCAN_MEMORY_LIMIT}'")
                _SCANS[database] = (0, limit)
            scans, limit = _SCANS[database]
            _SCANS[database] = (scans + 1, limit)
        try:
            yield
        finally:
            with _SCANS_LOCK:
                scans, limit = _SCANS.pop(database)
                if scans > 1:
                    _SCANS[database] = (scans - 1, limit)
                else:
                    settings.execute(f"SET memory_limit = '{limit}'")
    finally:
        settings.close()


def _read_error(pipeline: dlt.Pipeline, what: str, exc: BaseException) -> DestinationReadError:
    detail = (str(exc).strip().splitlines() or [""])[0][:300]
    return DestinationReadError(
        f"cannot read {what} of {dataset_names(pipeline).table(TABLE_NAME)} in the destination"
        f" ({type(exc).__name__}: {detail}); the run stopped before loading anything, the"
        " table and its state are as the last run left them: run again"
    )
