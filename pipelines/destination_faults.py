"""A destination that fails during a run, said in one line that names it and what to do.

Causes are told apart by type: `OSError.errno` for a full disk under `DLT_DATA_DIR`, the
SQLSTATE of a PostgreSQL error (`42501` no privilege, class `08` and `57P` a lost or
restarting server, `53` out of resources), psycopg2's connection errors that carry none.
DuckDB reports a full disk as a plain `IOException` with no errno, so that one case reads
the message.
"""

import errno
from pathlib import Path
from typing import Any, Optional

import dlt

from sources.resend_imports.errors import ResendError

from .failures import causes

NOTHING_LOST = (
    "nothing is lost: what was extracted stays in DLT_DATA_DIR and loads, or is listed again,"
    " on the next run"
)


class DestinationFaultError(ResendError):
    """The destination failed during a run; the message names it and what to do."""


def destination_credentials(pipeline: dlt.Pipeline) -> Any:
    """dlt's resolved credentials of the destination, or None when they do not resolve (the
    run then fails on them in its own words)."""
    try:
        return pipeline.destination_client().config.credentials
    except Exception:  # noqa: BLE001  (a description must never fail the caller)
        return None


def describe_destination(pipeline: dlt.Pipeline, credentials: Any = None) -> str:
    """Where the data goes, for people: the DuckDB file, or host:port/database."""
    destination: Any = pipeline.destination
    name = str(getattr(destination, "destination_name", "") or "")
    credentials = credentials or destination_credentials(pipeline)
    if credentials is None:
        return name
    if name == "duckdb":
        return f"DuckDB file {Path(str(credentials.database)).resolve()}"
    if name == "postgres":
        from .postgres import describe

        return describe(credentials)
    return name


def destination_fault(exc: BaseException, where: str) -> Optional[str]:
    """One line for a destination fault during a run, or None when `exc` is something else."""
    for cause in causes(exc):
        if isinstance(cause, OSError) and cause.errno == errno.ENOSPC:
            return (
                f"no space left on the device of {cause.filename or 'DLT_DATA_DIR'} while"
                f" syncing into {where}: free some space and run again; {NOTHING_LOST}"
            )
        if _is_duckdb_error(cause) and "No space left on device" in str(cause):
            return (
                f"no space left on the device of the {where} (DuckDB could not write):"
                f" free some space and run again; {NOTHING_LOST}"
            )
        message = _postgres_fault(cause, where)
        if message:
            return message
    return None


def _is_duckdb_error(cause: BaseException) -> bool:
    return type(cause).__module__.lstrip("_").startswith("duckdb")


def _postgres_fault(cause: BaseException, where: str) -> Optional[str]:
    try:
        import psycopg2
    except ImportError:
        return None
    if not isinstance(cause, psycopg2.Error):
        return None
    code = cause.pgcode or ""
    first_line = (str(cause).strip().splitlines() or [""])[0]
    if code == "42501":
        return (
            f"{where}: the user may not create or write the dataset's schema ({first_line});"
            " grant it (GRANT CREATE ON DATABASE ... TO ...) or create the schema for it, and"
            f" run again; {NOTHING_LOST}"
        )
    if code.startswith("53"):
        return f"{where}: the server is out of resources ({first_line}); {NOTHING_LOST}"
    if (
        code.startswith(("08", "57P"))
        or isinstance(cause, psycopg2.InterfaceError)
        or (isinstance(cause, psycopg2.OperationalError) and not code)
    ):
        return (
            f"{where}: lost the connection to the server during the run ({first_line});"
            f" run again when it is back: {NOTHING_LOST}"
        )
    return None
