"""One-line explanations of the failures a user can cause or meet."""

import difflib
import errno
import os
from typing import Any, List, Optional

import dlt.destinations
from dlt.common.configuration.exceptions import (
    ConfigFieldMissingException,
    ConfigValueCannotBeCoercedException,
    InvalidNativeValue,
)
from dlt.common.destination.exceptions import (
    DestinationUndefinedEntity,
    InvalidDestinationReference,
    UnknownDestinationModule,
)
from dlt.load.exceptions import LoadClientJobFailed

from resend_imports.causes import causes, refused_rows, retried_job
from resend_imports.errors import (
    DestinationReadError,
    MissingAPIKeyError,
    ResendAuthError,
    ResendError,
)
from resend_imports.http import shown_url

from .destinations.duckdb import held_file, is_out_of_memory

_FILE_ERRORS = (errno.EACCES, errno.EROFS, errno.ENOENT, errno.EPERM, errno.ENOTDIR)
KEY_SOURCES = (
    "RESEND_API_KEY, SOURCES__RESEND_IMPORTS__API_KEY or api_key under [sources.resend_imports]"
    " in .dlt/secrets.toml"
)


def explain(exc: BaseException) -> Optional[str]:
    """A one-line message for an expected failure, or None for a bug. The connector's own
    errors win: they say what happened in its words, wherever dlt wrapped them."""
    for cause in causes(exc):
        if isinstance(cause, DestinationReadError):  # the database's reason, when known
            behind = (_explain_one(c) for c in causes(cause) if not isinstance(c, ResendError))
            return next((message for message in behind if message), None) or str(cause)
        if isinstance(cause, ResendError):
            return _explain_one(cause)
    for cause in causes(exc):
        message = _explain_one(cause)
        if message:
            return message
    job = retried_job(exc)  # last: a cause behind it said more (DuckDB out of memory...)
    if job is not None:
        return (
            f"the load of {job.table} kept failing ({job.attempts} attempts; the database"
            f" said: {job.reason}); the extracted data waits in DLT_DATA_DIR and the next run"
            " loads it: nothing is lost"
        )
    return None


def _missing_configuration(exc: ConfigFieldMissingException) -> str:
    """Which field dlt could not find, and the environment variable it read for it."""
    missing: List[str] = []
    for field, traces in exc.traces.items():
        for entry in traces:
            inner = getattr(entry, "traces", None)  # dlt's LookupTraces of a nested spec
            found: Any = inner.items() if isinstance(inner, dict) else [(field, [entry])]
            for name, lookups in found:
                keys = [
                    t.key
                    for t in lookups
                    if t.provider == "Environment Variables"
                    and t.key == "__".join([*t.sections, name]).upper()
                ]
                where = f" (e.g. {keys[0]})" if keys else ""
                missing.append(f"{name}{where}")
    if not missing:
        missing = list(exc.fields)
    text = f"missing configuration: {', '.join(dict.fromkeys(missing))}"
    if any(name.startswith("password") for name in missing):
        text += "; or put the password in the connection string (postgresql://user:PASSWORD@...)"
    return text + " (see README, Configuration)"


def _explain_one(exc: BaseException) -> Optional[str]:
    if isinstance(exc, ResendAuthError):
        return (
            f"Resend rejected the API key (HTTP {exc.status_code} {exc.name}: {exc.message});"
            f" the key is read from {KEY_SOURCES}"
        )
    if isinstance(exc, MissingAPIKeyError):
        return f"{exc} (to try the connector without a key: resend-imports demo)"
    if isinstance(exc, ResendError):
        return str(exc)
    if isinstance(exc, ConfigValueCannotBeCoercedException):
        secret = "key" in exc.field_name or exc.field_name == "accounts"  # keys: never shown
        shown = "***" if secret else repr(_shown(exc.field_value))
        expected = getattr(exc.hint, "__name__", str(exc.hint))
        return f"config value {exc.field_name} = {shown} is not a valid {expected}"
    if isinstance(exc, ConfigFieldMissingException):
        return _missing_configuration(exc)
    if isinstance(exc, InvalidNativeValue):  # the value may hold a password: never shown
        kind = getattr(exc.spec, "__name__", "").removesuffix("Credentials").upper()
        where = f"DESTINATION__{kind}__CREDENTIALS" if kind else "the destination's credentials"
        return (
            f"the connection string in {where} (or its .dlt/secrets.toml entry) cannot be"
            " parsed: expected e.g. postgresql://user:password@host:5432/database"
        )
    if isinstance(exc, (UnknownDestinationModule, InvalidDestinationReference)):
        return unknown_destination(getattr(exc, "ref", None) or getattr(exc, "refs", None))
    if isinstance(exc, OSError) and exc.errno in _FILE_ERRORS and exc.filename:
        return _unwritable(exc)
    rows = refused_rows(exc) if isinstance(exc, LoadClientJobFailed) else None
    if rows is not None:
        return (
            f"the destination refused the rows of {rows[0]} ({rows[1]}); their load package"
            " was discarded and the state rewound to the last load, so nothing is lost and the"
            " next run extracts them again"
        )
    if isinstance(exc, DestinationUndefinedEntity):
        return f"destination error: {exc}".splitlines()[0]
    held = held_file(str(exc))
    if held is not None:
        return (
            f"the DuckDB file {held[0]} is locked by another process; run again once"
            " it is closed (nothing is lost: anything already extracted loads on the next run)"
        )
    if is_out_of_memory(exc):
        return (
            "DuckDB ran out of memory while loading; raise memory_limit in"
            " DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG and run again (nothing is lost:"
            f" the extracted data loads on the next run): {str(exc).splitlines()[0]}"
        )
    return None


def _unwritable(exc: OSError) -> str:
    """A file that could not be written, and whose folder it is: dlt's working folder, or
    another (a local bucket's), which DLT_DATA_DIR does not move."""
    reason = exc.strerror.lower() if exc.strerror else "error"
    working = os.path.realpath(dlt.current.run_context().data_dir)
    path = os.path.realpath(os.fsdecode(exc.filename))
    if path == working or path.startswith(working + os.sep):
        return (
            f"cannot write {exc.filename} ({reason}): dlt keeps its working folder in"
            " DLT_DATA_DIR (by default ~/.dlt, /var/dlt for root: `resend-imports sync --help`"
            " shows yours); point it at a writable folder. Nothing was synced"
        )
    return (
        f"cannot write {exc.filename} ({reason}), outside dlt's working folder (the"
        " destination's, e.g. a local bucket's): make the folder it names a writable folder"
    )


def unknown_destination(name: Any) -> str:
    """A destination dlt does not know, the closest name it knows, and the flag a DuckDB
    file goes with; a name that holds a password (a connection string) is never shown."""
    shown = _shown(name)
    text = f"unknown destination {shown!r}"
    known = [ref for ref in dlt.destinations.__all__ if ref != "destination"]
    close = difflib.get_close_matches(str(name), known, n=1) if isinstance(name, str) else []
    if close:
        text += f": did you mean {close[0]}?"
    else:
        text += ": use a dlt destination name such as duckdb, postgres, motherduck, bigquery"
        text += " or snowflake"
    if isinstance(name, str) and "://" in name:
        text += "; a connection string goes in DESTINATION__POSTGRES__CREDENTIALS (or"
        text += " .dlt/secrets.toml), with --destination postgres"
    elif isinstance(name, str) and (name.endswith(".duckdb") or "/" in name) and shown == name:
        text += f"; for a DuckDB file, --duckdb {name} (or DESTINATION__DUCKDB__CREDENTIALS)"
    return text


def _shown(value: Any) -> Any:
    """A value as a message may show it: a URL in it without its password."""
    return shown_url(value) if isinstance(value, str) else value
