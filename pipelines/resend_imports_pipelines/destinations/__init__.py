"""The destinations the command line knows more of than dlt does, one module each behind
`base.DestinationKind`; any other dlt destination runs with the base (dlt alone).

A new destination is one new module whose `KIND` is its `DestinationKind`, named in
`MODULES` by dlt's name of the destination. A module is imported when a run first uses its
destination, never before: a run loads no other destination's driver (a DuckDB sync neither
deltalake nor pyiceberg nor psycopg2), and a destination whose extra is not installed runs
with the base, where dlt says what is missing.
"""

import errno
import importlib
from typing import Dict, Optional

import dlt

from resend_imports.causes import causes

from . import duckdb
from .base import NOTHING_LOST, DestinationKind, Target, destination_name, resolve_credentials
from .locks import SyncLockedError

__all__ = [
    "MODULES",
    "DestinationKind",
    "SyncLockedError",
    "Target",
    "destination_name",
    "fault",
    "kind_of",
    "target_of",
]

# dlt's destination name -> the module of this package that holds its kind
MODULES: Dict[str, str] = {"duckdb": "duckdb", "postgres": "postgres", "filesystem": "filesystem"}
_ANY = DestinationKind()
# the kinds imported so far; DuckDB's from the start: every run's scratch files are DuckDB's
_LOADED: Dict[str, DestinationKind] = {duckdb.KIND.name: duckdb.KIND}


def kind_of(name: str) -> DestinationKind:
    """The kind of dlt's destination `name`, its module imported on first use; the base for
    a destination with no module here, or whose extra (its driver) is not installed."""
    kind = _LOADED.get(name)
    if kind is not None or name not in MODULES:
        return kind or _ANY
    try:
        module = importlib.import_module(f"{__name__}.{MODULES[name]}")
    except ImportError:  # psycopg2 comes with the `postgres` extra, deltalake and pyiceberg
        return _ANY  # with `lakehouse`: without them, dlt says what is missing
    loaded: DestinationKind = module.KIND
    return _LOADED.setdefault(name, loaded)


def target_of(pipeline: dlt.Pipeline) -> Target:
    """The pipeline's destination for one run, its credentials resolved once."""
    kind = kind_of(destination_name(pipeline))
    return Target(pipeline, kind, resolve_credentials(pipeline, kind))


def fault(exc: BaseException, where: str) -> Optional[str]:
    """One line for a destination fault during a run into `where`, or None when `exc` is
    something else: a full disk under `DLT_DATA_DIR` (any destination), or a fault of a
    destination's driver, told by its type whichever destination the run writes. Only the
    kinds loaded are asked: a driver no run of this process loaded raised nothing."""
    for cause in causes(exc):
        if isinstance(cause, OSError) and cause.errno == errno.ENOSPC:
            return (
                f"no space left on the device of {cause.filename or 'DLT_DATA_DIR'} while"
                f" syncing into {where}: free some space and run again; {NOTHING_LOST}"
            )
        for kind in list(_LOADED.values()):
            message = kind.fault(cause, where)
            if message:
                return message
    return None
