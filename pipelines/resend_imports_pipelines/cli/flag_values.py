"""What the command line's flags accept: each value checked when it is parsed, so that a bad
one is refused in one line naming the flag, before anything runs."""

import argparse
import math
from typing import Callable, Optional

MAX_DAYS = 3650  # ten years: far more than any account has, far less than dates can hold


def _number(text: str, accept: Callable[[float], bool], expected: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan  # accepted by no rule
    if not accept(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def seconds(text: str) -> float:
    return _number(text, lambda value: value >= 0, "a number of seconds, 0 or more")


def rate(text: str) -> float:
    return _number(text, lambda value: 0 < value <= 1, "a rate above 0 and at most 1")


def hours(text: str) -> float:
    return _number(text, lambda value: value > 0, "a number of hours above 0")


def _whole(text: str, low: int, high: Optional[int] = None) -> int:
    if not text.isdigit() or not low <= int(text) <= (high or int(text)):
        bound = f"from {low} to {high}" if high else f"of at least {low}"
        raise argparse.ArgumentTypeError(f"expected a whole number {bound}, got {text!r}")
    return int(text)


def positive_int(text: str) -> int:
    return _whole(text, 1)


def days(text: str) -> int:
    return _whole(text, 1, MAX_DAYS)
