"""dlt source for Resend contact imports (`GET /contacts/imports`)."""

import inspect
import os
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Dict, Iterator, List, Optional, Tuple

import dlt
from dlt.common.typing import TSecretStrValue
from dlt.sources import DltResource

from .accounts import ACCOUNT_COLUMN, ACCOUNT_HINT, configured_accounts, selected
from .alerts import add_alerts_table
from .client import ResendClient, RetryPolicy
from .committed import running_pipeline
from .config import SECTION, source_arguments
from .fanout import sync_contact_imports
from .history import add_history_table
from .legacy import adopt_legacy_schema
from .options import RunOptions, check_deletion_settings, check_settings, clean_key
from .pending import settle_pending_packages
from .quarantine import add_quarantine_table
from .records import COLUMNS
from .settings import (
    API_KEY_ENV,
    API_URL_ENV,
    DEFAULT_BASE_URL,
    DEFAULT_CONNECT_TIMEOUT_SECONDS,
    DEFAULT_FULL_REFRESH_EVERY_DAYS,
    DEFAULT_GONE_AFTER_RUNS,
    DEFAULT_INITIAL_BACKOFF_SECONDS,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_BACKOFF_SECONDS,
    DEFAULT_MAX_RATE_LIMIT_WAIT_SECONDS,
    DEFAULT_PAGE_SIZE,
    DEFAULT_READ_TIMEOUT_SECONDS,
    PROGRESS_EVERY_SECONDS,
    SOURCE_NAME,
    TABLE_NAME,
)
from .sync_report import SyncReport
from .table_formats import apply_table_format, check_table_format

__all__ = ["SyncReport", "contact_imports", "resend_source", "user_agent"]


def user_agent() -> str:
    try:
        return f"resend-imports/{version('resend-imports')}"
    except PackageNotFoundError:
        return "resend-imports/0+unknown"


@dlt.resource(
    name=TABLE_NAME,
    primary_key=(ACCOUNT_COLUMN, "id"),
    write_disposition={"disposition": "merge", "strategy": "delete-insert"},
    columns={**COLUMNS, **ACCOUNT_HINT},
)
def contact_imports(
    clients: Dict[str, ResendClient],
    page_size: int = DEFAULT_PAGE_SIZE,
    status: Optional[str] = None,
    full_refresh: bool = False,
    gone_after_runs: int = DEFAULT_GONE_AFTER_RUNS,
    full_refresh_every_days: float = DEFAULT_FULL_REFRESH_EVERY_DAYS,
    alert_settings: Tuple[Tuple[str, Any], ...] = (),
    left_over_loaded: bool = False,
) -> Iterator[Any]:
    """Yields contact imports in batches, of every account in `clients` (name -> its
    client), each account a run of its own (see `fanout`); see `incremental` for what a run
    lists.

    Also yields, to `contact_import_status_history`, the imports this run saw in a new
    status or with new counts (compared with the table: see `known` and `history`), to
    `contact_import_alerts` the alerts those raise (see `alerts`), and to
    `contact_imports_quarantine` the records it could not load as typed (see
    `quarantine`), in the same load package.

    The run starts from the state committed in the destination with the table (see
    `destination`), checks the table and the API key against it (see `run`), and marks
    deleted (`deleted_at`) the imports it concludes are gone.
    With a `status` filter every matching import is listed and the incremental state is
    neither used nor changed (a filtered list cannot tell where history ends). What the run
    did (`SyncReport`) lands in dlt's resource metrics: `last_trace.last_extract_info`.
    """
    options = RunOptions(
        page_size=page_size,
        status=status,
        full_refresh=full_refresh,
        gone_after_runs=gone_after_runs,
        full_refresh_every_days=full_refresh_every_days,
        alert_settings=alert_settings,
    )
    yield from sync_contact_imports(clients, options, left_over_loaded)


# settings under `[sources.resend_imports]` (see `config`); schema and state keep the name
# `resend` that installs already hold
@dlt.source(name=SOURCE_NAME, section=SECTION)
def resend_source(
    api_key: Optional[TSecretStrValue] = dlt.secrets.value,
    accounts: Optional[Dict[str, TSecretStrValue]] = dlt.secrets.value,
    account_names: Optional[List[str]] = None,
    base_url: Optional[str] = dlt.config.value,
    page_size: int = DEFAULT_PAGE_SIZE,
    status: Optional[str] = None,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    initial_backoff_seconds: float = DEFAULT_INITIAL_BACKOFF_SECONDS,
    max_backoff_seconds: float = DEFAULT_MAX_BACKOFF_SECONDS,
    max_rate_limit_wait_seconds: float = DEFAULT_MAX_RATE_LIMIT_WAIT_SECONDS,
    connect_timeout_seconds: float = DEFAULT_CONNECT_TIMEOUT_SECONDS,
    read_timeout_seconds: float = DEFAULT_READ_TIMEOUT_SECONDS,
    progress_every_seconds: float = PROGRESS_EVERY_SECONDS,
    full_refresh: bool = False,
    gone_after_runs: int = DEFAULT_GONE_AFTER_RUNS,
    full_refresh_every_days: float = DEFAULT_FULL_REFRESH_EVERY_DAYS,
    alert_settings: Optional[Dict[str, Any]] = None,
    table_format: Optional[str] = None,
) -> DltResource:
    """Resend contact imports, merged on `id` and refreshed until terminal.

    Args:
        api_key: Resend API key; falls back to `RESEND_API_KEY`. One account, `default`.
        accounts: Several Resend accounts, name -> API key (`[sources.resend_imports.accounts]`
            or JSON); when set, `api_key` is not used.
        account_names: Only these of `accounts` (the command line's `--account`).
        base_url: API base URL; falls back to `RESEND_API_URL`, then the public API.
        page_size: Imports per list request, 1 to 100.
        status: Only imports with this status (the state is then left alone).
        max_attempts: Attempts per HTTP request, the first included.
        initial_backoff_seconds: First backoff between attempts; doubles each retry.
        max_backoff_seconds: Cap of the backoff (a `retry-after` header wins).
        max_rate_limit_wait_seconds: How long one request may wait out 429s (they do not
            count as attempts) before the run fails.
        connect_timeout_seconds: TCP connect timeout of one request.
        read_timeout_seconds: Read timeout of one request.
        progress_every_seconds: How often a long listing logs its progress.
        full_refresh: List every import again instead of starting from the state.
        gone_after_runs: Consecutive runs an import must answer 404 before it is marked
            deleted.
        full_refresh_every_days: List every import again at least this often, to catch
            what the frontier cannot see (deletions, changes deep in history); 0: never.
        alert_settings: Alert settings that win over `[sources.resend_imports.alerts]`
            (e.g. `{"enabled": False}`), checked when the run starts.
        table_format: `delta` or `iceberg`: every table in that open table format, on dlt's
            `filesystem` destination (merged by upsert); None: the destination's own tables.
    """
    arguments = source_arguments(locals(), _DEFAULTS)
    return _source(**arguments)


def _source(
    api_key: Optional[str],
    accounts: Any,
    account_names: Optional[List[str]],
    base_url: Optional[str],
    page_size: int,
    status: Optional[str],
    max_attempts: int,
    initial_backoff_seconds: float,
    max_backoff_seconds: float,
    max_rate_limit_wait_seconds: float,
    connect_timeout_seconds: float,
    read_timeout_seconds: float,
    progress_every_seconds: float,
    full_refresh: bool,
    gone_after_runs: int,
    full_refresh_every_days: float,
    alert_settings: Optional[Dict[str, Any]],
    table_format: Optional[str],
) -> DltResource:
    # a missing key fails the run when it starts, not here: a scheduler (Airflow) builds the
    # source where the secrets may not be, and hands it to a worker where they are
    keys = configured_accounts(accounts, api_key or os.environ.get(API_KEY_ENV) or "")
    keys = selected(keys, account_names)
    check_settings(
        page_size,
        status,
        max_attempts,
        timeouts={
            "connect_timeout_seconds": connect_timeout_seconds,
            "read_timeout_seconds": read_timeout_seconds,
        },
        waits={
            "initial_backoff_seconds": initial_backoff_seconds,
            "max_backoff_seconds": max_backoff_seconds,
            "max_rate_limit_wait_seconds": max_rate_limit_wait_seconds,
            "progress_every_seconds": progress_every_seconds,
        },
    )
    check_deletion_settings(gone_after_runs, full_refresh_every_days)
    chosen_format = check_table_format(table_format)
    url = base_url or os.environ.get(API_URL_ENV) or DEFAULT_BASE_URL
    policy = RetryPolicy(
        max_attempts, initial_backoff_seconds, max_backoff_seconds, max_rate_limit_wait_seconds
    )
    clients = {
        name: ResendClient(  # one per account: each paced by its own rate-limit headers
            clean_key(key),
            url,
            user_agent=user_agent(),
            retry_policy=policy,
            connect_timeout=connect_timeout_seconds,
            read_timeout=read_timeout_seconds,
            progress_every=progress_every_seconds,
        )
        for name, key in keys.items()
    }
    pipeline = running_pipeline()
    left_over_loaded = False
    if pipeline is not None:
        # the destination's committed state wins
        left_over_loaded = settle_pending_packages(pipeline)
        adopt_legacy_schema(pipeline)  # an install from before the source's rename
    resource = contact_imports(
        clients,
        page_size,
        status,
        full_refresh,
        gone_after_runs,
        full_refresh_every_days,
        tuple((alert_settings or {}).items()),
        left_over_loaded,
    )
    tables = add_quarantine_table(add_alerts_table(add_history_table(resource)))
    return apply_table_format(tables, chosen_format)


# the defaults of the source's arguments, where an earlier version's section may stand in
_DEFAULTS = {
    name: None if parameter.default in (dlt.config.value, dlt.secrets.value) else parameter.default
    for name, parameter in inspect.signature(resend_source).parameters.items()
    if name not in ("full_refresh", "alert_settings", "account_names")
}
