"""What a scheduler (Airflow) needs around the sync: a DuckDB path that survives, and errors
told in one line."""

import logging
import os
from pathlib import Path
from typing import Any, List, Mapping, Optional

import dlt

from sources.resend_imports.accounts import configured_accounts
from sources.resend_imports.config import SOURCE_SECTIONS, legacy_value
from sources.resend_imports.errors import ResendConfigError

from ..failures import explain
from .pipeline import DUCKDB_FILE_ENV, default_duckdb_file

DESTINATION_ENV = "RESEND_IMPORTS_DESTINATION"

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


def destination_for_scheduler(environ: Optional[Mapping[str, str]] = None) -> Any:
    """`RESEND_IMPORTS_DESTINATION` (any dlt destination, configured the dlt way), else DuckDB
    at `duckdb_file_for_scheduler()`, its folder created."""
    environ = os.environ if environ is None else environ
    name = environ.get(DESTINATION_ENV, "duckdb")
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
