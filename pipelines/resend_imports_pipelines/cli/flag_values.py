"""What the command line's flags accept: each value checked when it is parsed, so that a bad
one is refused in one line naming the flag, before anything runs."""

import argparse
import math
from typing import Optional

from resend_imports.options import LIMIT_HOURS, RATE, SECONDS, TEN_YEARS_DAYS, Span

MAX_DAYS = TEN_YEARS_DAYS  # far more than any account has, far less than dates can hold


def _number(text: str, span: Span) -> float:
    """`text` as a number within `span`, the rule the same setting's configured value obeys."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan  # within no span
    if not span.holds(value):
        raise argparse.ArgumentTypeError(f"expected {span}, got {text!r}")
    return value


def seconds(text: str) -> float:
    return _number(text, SECONDS)


def rate(text: str) -> float:
    return _number(text, RATE)


def hours(text: str) -> float:
    return _number(text, LIMIT_HOURS)


def _whole(text: str, low: int, high: Optional[int] = None) -> int:
    if not text.isdigit() or not low <= int(text) <= (high or int(text)):
        bound = f"from {low} to {high}" if high else f"of at least {low}"
        raise argparse.ArgumentTypeError(f"expected a whole number {bound}, got {text!r}")
    return int(text)


def positive_int(text: str) -> int:
    return _whole(text, 1)


def days(text: str) -> int:
    return _whole(text, 1, MAX_DAYS)
