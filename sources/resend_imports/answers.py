"""What Resend's answers say: the JSON object of a 2xx answer, the `name` and `message` of an
error, the client's log lines about them (a listing's progress, a retry, a wait), and why it
gave a request up (for the one line the run fails with)."""

from typing import Any, Dict, Optional

import orjson
import urllib3

from .errors import ResendDataError, RetryableResponseError
from .http import RATE_LIMITED, AttemptBudget, RetryPolicy

JSONObject = Dict[str, Any]


def json_object(response: urllib3.BaseHTTPResponse, path: str) -> JSONObject:
    """The body of a 2xx answer. A body that is not JSON is retried (a proxy's page, a cut
    answer); JSON that is not an object is Resend's data, which a retry will not change."""
    try:
        body = orjson.loads(response.data)
    except ValueError:
        raise RetryableResponseError(
            response.status, "invalid_json", "2xx body is not valid JSON", path=path
        ) from None
    if not isinstance(body, dict):
        raise ResendDataError(f"GET {path}: the response is not a JSON object")
    return body


def error_fields(response: urllib3.BaseHTTPResponse) -> tuple[str, str]:
    """Resend's error `name` and `message`, or a summary of a body that is not JSON."""
    try:
        body = orjson.loads(response.data)
    except ValueError:
        body = None
    if isinstance(body, dict) and ("name" in body or "message" in body):
        return str(body.get("name", "error")), str(body.get("message", ""))
    content_type = response.headers.get("content-type", "unknown").split(";")[0]
    return "http_error", f"{response.reason or 'error'} ({content_type} body)"


def exhausted_reason(budget: AttemptBudget, last: RetryableResponseError, requests: int) -> str:
    """Why a request was given up, for the error the run fails with (429s are no attempts,
    unless they wait nothing)."""
    if last.status_code == RATE_LIMITED and budget.rate_limit_spent:
        return f"gave up after {requests} requests, {_over_budget(budget.policy)}"
    attempts = budget.failures
    return (
        f"gave up after {attempts} attempt{'s' if attempts > 1 else ''}, last: "
        f"{last.name}: {last.message}"
    )


def pacing_reason(policy: RetryPolicy, reset: float) -> str:
    """Why a request was not sent: the rate-limit window Resend announced ends too late."""
    return (
        f"not sent, Resend asked to wait {reset:g}s for its rate-limit window"
        f" (ratelimit-remaining 0, ratelimit-reset {reset:g}): {_over_budget(policy)}"
    )


def _over_budget(policy: RetryPolicy) -> str:
    return (
        f"rate limited for over {policy.max_rate_limit_wait_seconds:g}s"
        " (raise max_rate_limit_wait_seconds to wait longer)"
    )


def retry_words(exc: Optional[BaseException], budget: AttemptBudget, rate_limit_turn: bool) -> str:
    """Why a request is tried again, for its WARNING: a turn to wait (a 429), or a failed
    attempt of the budget's."""
    if rate_limit_turn:
        return ": rate limited (HTTP 429), waiting as Resend asks (not an attempt)"
    status = getattr(exc, "status_code", None)
    answer = f"HTTP {status}" if status is not None else "no response:"
    return (
        f" (attempt {budget.failures + 1} of {budget.policy.max_attempts}):"
        f" {answer} {getattr(exc, 'message', exc)}"
    )


def pacing_line(wait: float, path: str, reset: float) -> str:
    """The INFO line of a long wait for a used-up rate-limit window: never a silent wait."""
    return (
        f"waiting {wait:.0f}s before GET {path}: Resend's rate-limit window is used up"
        f" (ratelimit-remaining 0, ratelimit-reset {reset:g})"
    )


def progress_line(items: int, requests: int, seconds: float, expected: Optional[int]) -> str:
    """`listed 5,100 contact imports (51 requests, 1,200/s, 4.2 s; about 42% of 12,000)`."""
    rate = items / seconds if seconds > 0 else 0.0
    line = (
        f"listed {items:,} contact imports ({requests:,} requests, {rate:,.0f}/s, {seconds:.1f} s"
    )
    if expected:
        line += f"; about {min(items / expected, 1.0):.0%} of the {expected:,} the table holds"
    return line + ")"
