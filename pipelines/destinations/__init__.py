"""The destinations the command line knows more of than dlt does, one module each behind
`base.DestinationKind`; any other dlt destination runs with the base (dlt alone).

A new destination is one new module with a `DestinationKind`, listed in `KINDS`.
"""

import errno
from typing import Dict, Optional, Tuple

import dlt

from sources.resend_imports.causes import causes

from .base import NOTHING_LOST, DestinationKind, Target, destination_name, resolve_credentials
from .duckdb import DuckDB
from .locks import SyncLockedError

_OPTIONAL: Tuple[DestinationKind, ...] = ()
try:
    from .postgres import Postgres

    _OPTIONAL += (Postgres(),)
except ImportError:  # psycopg2 comes with the `postgres` extra; without it, dlt says so
    pass
try:
    from .filesystem import Filesystem

    _OPTIONAL += (Filesystem(),)
except ImportError:  # deltalake and pyiceberg come with the `lakehouse` extra
    pass

__all__ = [
    "KINDS",
    "DestinationKind",
    "SyncLockedError",
    "Target",
    "destination_name",
    "fault",
    "target_of",
]

KINDS: Dict[str, DestinationKind] = {kind.name: kind for kind in (DuckDB(), *_OPTIONAL)}
_ANY = DestinationKind()


def target_of(pipeline: dlt.Pipeline) -> Target:
    """The pipeline's destination for one run, its credentials resolved once."""
    kind = KINDS.get(destination_name(pipeline), _ANY)
    return Target(pipeline, kind, resolve_credentials(pipeline, kind))


def fault(exc: BaseException, where: str) -> Optional[str]:
    """One line for a destination fault during a run into `where`, or None when `exc` is
    something else: a full disk under `DLT_DATA_DIR` (any destination), or a fault of a
    destination's driver, told by its type whichever destination the run writes."""
    for cause in causes(exc):
        if isinstance(cause, OSError) and cause.errno == errno.ENOSPC:
            return (
                f"no space left on the device of {cause.filename or 'DLT_DATA_DIR'} while"
                f" syncing into {where}: free some space and run again; {NOTHING_LOST}"
            )
        for kind in KINDS.values():
            message = kind.fault(cause, where)
            if message:
                return message
    return None
