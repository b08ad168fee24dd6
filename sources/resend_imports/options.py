"""The options of one run of the resource, as one frozen value, and the checks of the
settings they come from (each failing in one line before anything is read)."""

import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Tuple

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


TEN_YEARS_DAYS = 3650  # the longest time a setting gives: far more than any needs, far less
# than a date, a deadline or a socket timeout can hold


@dataclass(frozen=True)
class Span:
    """What a float setting may be: from `low` (above it when `above`) to `high`, finite.

    nan and infinity are numbers to dlt and to `float()`, and slip past a check such as
    `< 0` (nan fails every comparison), to break a sleep, a timeout or a date in the middle
    of a run; so does a huge value (a timedelta of 1e308 hours). Every setting, flag and
    spec checks its numbers against one of these, so that all are refused alike: in one
    line naming the setting, before any request.
    """

    low: float
    high: float
    unit: str = ""
    above: bool = False

    def holds(self, value: float) -> bool:
        if not math.isfinite(value) or not self.low <= value <= self.high:
            return False
        return value > self.low or not self.above

    def check(self, name: str, value: float, where: str = "") -> None:
        if not self.holds(value):
            raise ResendConfigError(f"{name} must be {self}, got {value}{where}")

    def __str__(self) -> str:
        low, high = _number(self.low), f"{_number(self.high)}{' ' if self.unit else ''}{self.unit}"
        return f"above {low} and at most {high}" if self.above else f"{low} to {high}"


def _number(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:g}"


SECONDS = Span(0, TEN_YEARS_DAYS * 86400, "seconds")
TIMEOUT_SECONDS = Span(0, TEN_YEARS_DAYS * 86400, "seconds", above=True)
HOURS = Span(0, TEN_YEARS_DAYS * 24, "hours")
LIMIT_HOURS = Span(0, TEN_YEARS_DAYS * 24, "hours", above=True)
DAYS = Span(0, TEN_YEARS_DAYS, "days")
RATE = Span(0, 1, above=True)


def check_settings(
    page_size: int,
    status: Optional[str],
    max_attempts: int,
    timeouts: Mapping[str, float],
    waits: Mapping[str, float],
) -> None:
    """`timeouts` above 0 seconds, `waits` (backoffs, a budget, an interval) 0 or more, each
    by its name."""
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ResendConfigError(f"page_size must be 1 to {MAX_PAGE_SIZE}, got {page_size}")
    if status is not None and status not in STATUSES:
        raise ResendConfigError(f"status must be one of {', '.join(STATUSES)}; got {status!r}")
    if max_attempts < 1:
        raise ResendConfigError(f"max_attempts must be at least 1, got {max_attempts}")
    for name, value in timeouts.items():
        TIMEOUT_SECONDS.check(name, value)
    for name, value in waits.items():
        SECONDS.check(name, value)


def check_deletion_settings(gone_after_runs: int, full_refresh_every_days: float) -> None:
    if gone_after_runs < 1:
        raise ResendConfigError(f"gone_after_runs must be at least 1, got {gone_after_runs}")
    DAYS.check("full_refresh_every_days", full_refresh_every_days)  # 0: never


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
