"""What a scheduler (Airflow) needs around the sync: a DuckDB path that survives, and errors
told in one line."""

import logging
import os
from pathlib import Path
from typing import Any, List, Mapping, Optional, Tuple
from urllib.parse import urlsplit, urlunsplit

import dlt

from resend_imports.accounts import configured_accounts
from resend_imports.config import SOURCE_SECTIONS, legacy_value
from resend_imports.errors import ResendConfigError

from ..failures import explain
from .pipeline import DESTINATION_ENV, DUCKDB_FILE_ENV, configured_destination, default_duckdb_file

CONNECTION_ID = "resend_imports_destination"  # an Airflow Connection naming the warehouse
POSTGRES_CONNECTION_TYPES = frozenset({"postgres", "postgresql"})

logger = logging.getLogger("resend_imports")


def duckdb_file_for_scheduler(environ: Optional[Mapping[str, str]] = None) -> str:
    """The DuckDB file a scheduled task loads into: always an absolute path.

    dlt's Airflow helper runs every task in a fresh temporary folder, so a relative path would
    put the data (and the incremental state kept with it) somewhere deleted after the task.
    `DESTINATION__DUCKDB__CREDENTIALS` wins when set, and must then be absolute; otherwise
    the file is `$AIRFLOW_HOME/data/resend_imports.duckdb` (`~/airflow` without AIRFLOW_HOME).
    """
    environ = os.environ if environ is None else environ
    configured = environ.get(DUCKDB_FILE_ENV)
    if configured:
        if not Path(configured).is_absolute():
            raise ResendConfigError(
                f"{DUCKDB_FILE_ENV}={configured!r} is relative: under Airflow each task runs in a"
                " temporary folder, so give an absolute path"
            )
        return configured
    airflow_home = Path(environ.get("AIRFLOW_HOME") or "~/airflow").expanduser()
    return str(default_duckdb_file(airflow_home.resolve() / "data"))


def destination_of_connection(conn_type: str, uri: str) -> Any:
    """The destination an Airflow Connection (`resend_imports_destination`) describes, so that a
    warehouse's password lives where Airflow keeps the others. PostgreSQL only: another
    warehouse is configured the dlt way (`RESEND_IMPORTS_DESTINATION` and its credentials)."""
    if conn_type not in POSTGRES_CONNECTION_TYPES:
        raise ResendConfigError(
            f"the Airflow connection {CONNECTION_ID} is of type {conn_type!r}: it can name a"
            " PostgreSQL database (type postgres); configure other destinations with"
            f" {DESTINATION_ENV} and their credentials the dlt way"
        )
    address = urlsplit(uri)
    return dlt.destinations.postgres(credentials=urlunsplit(address._replace(scheme="postgresql")))


def destination_for_scheduler(
    environ: Optional[Mapping[str, str]] = None, connection: Optional[Tuple[str, str]] = None
) -> Any:
    """The Airflow Connection's database (`connection`: its type and URI) when there is one,
    else `RESEND_IMPORTS_DESTINATION` (any dlt destination, configured the dlt way), else
    DuckDB at `duckdb_file_for_scheduler()`, its folder created."""
    if connection is not None:
        return destination_of_connection(*connection)
    environ = os.environ if environ is None else environ
    name = configured_destination(environ)
    if name != "duckdb":
        return name
    database = Path(duckdb_file_for_scheduler(environ))
    database.parent.mkdir(parents=True, exist_ok=True)
    return dlt.destinations.duckdb(str(database))


def account_groups() -> List[Optional[List[str]]]:
    """The configured accounts' names in `account_groups` groups (sorted names dealt in
    turn), for the DAG's mapped sync; [None] (every account) with one group or one key."""
    count = dlt.config.get(".".join((*SOURCE_SECTIONS, "account_groups")), int) or 1
    if count < 1:
        raise ResendConfigError(f"account_groups must be at least 1, got {count}")
    accounts: Any = dlt.secrets.get(".".join((*SOURCE_SECTIONS, "accounts")))
    if accounts is None:
        accounts = legacy_value(SOURCE_SECTIONS, "accounts")
    names = sorted(configured_accounts(accounts, ""))  # names only: keys stay in the config
    if count == 1 or len(names) == 1:
        return [None]
    return [group for group in (names[start::count] for start in range(count)) if group]


def log_failure(context: Mapping[str, Any]) -> None:
    """Airflow `on_failure_callback`: the failure in one line in the task log."""
    exception = context.get("exception")
    if isinstance(exception, BaseException):
        message = explain(exception) or f"unexpected error: {type(exception).__name__}"
        logger.error("resend-imports: error: %s", message)
