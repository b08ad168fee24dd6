"""The options of one run of the resource, as one frozen value, and the checks of the
settings they come from (each failing in one line before anything is read)."""

from dataclasses import dataclass
from typing import Any, Optional, Tuple

from .errors import ResendConfigError
from .settings import (
    DEFAULT_FULL_REFRESH_EVERY_DAYS,
    DEFAULT_GONE_AFTER_RUNS,
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    STATUSES,
)


@dataclass(frozen=True)
class RunOptions:
    """The settings of one run of `contact_imports`."""

    page_size: int = DEFAULT_PAGE_SIZE
    status: Optional[str] = None  # list only imports with this status; the state is left alone
    full_refresh: bool = False  # list every import again
    gone_after_runs: int = DEFAULT_GONE_AFTER_RUNS
    full_refresh_every_days: float = DEFAULT_FULL_REFRESH_EVERY_DAYS
    # alert settings given as arguments (the command line's flags), over the configured ones
    alert_settings: Tuple[Tuple[str, Any], ...] = ()


def check_settings(
    page_size: int,
    status: Optional[str],
    max_attempts: int,
    connect_timeout: float,
    read_timeout: float,
) -> None:
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ResendConfigError(f"page_size must be 1 to {MAX_PAGE_SIZE}, got {page_size}")
    if status is not None and status not in STATUSES:
        raise ResendConfigError(f"status must be one of {', '.join(STATUSES)}; got {status!r}")
    if max_attempts < 1:
        raise ResendConfigError(f"max_attempts must be at least 1, got {max_attempts}")
    if connect_timeout <= 0 or read_timeout <= 0:
        raise ResendConfigError("connect_timeout_seconds and read_timeout_seconds must be > 0")


def check_deletion_settings(gone_after_runs: int, full_refresh_every_days: float) -> None:
    if gone_after_runs < 1:
        raise ResendConfigError(f"gone_after_runs must be at least 1, got {gone_after_runs}")
    if full_refresh_every_days < 0:
        raise ResendConfigError(
            f"full_refresh_every_days must be 0 (never) or more, got {full_refresh_every_days}"
        )


def clean_key(key: str) -> str:
    """The key without the newline a mounted secret file often ends in; one with spaces or
    control characters inside is refused (it is never sent, logged or echoed)."""
    key = key.strip()
    if any(not character.isprintable() or character.isspace() for character in key):
        raise ResendConfigError(
            "the Resend API key contains spaces or control characters: check RESEND_API_KEY,"
            " SOURCES__RESEND_IMPORTS__API_KEY or api_key under [sources.resend_imports]"
        )
    return key
