"""The HTTP vocabulary of the connector: which URLs a secret may travel to, what a failed
exchange is called, and how one request is retried.

Both senders use it: the API client (the key in the `Authorization` header) and the alert
delivery of `pipelines/` (the secret in the hook's URL). It lives in the source package so
that a copy made with `dlt init` carries the same rules as the command line.

URLs are judged by the parser that sends them (urllib3's), so that the host checked is the
host contacted: a backslash or a `user:password@` part, which parsers read differently (and
which would put a password into messages), is refused outright. Every URL the connector
prints goes through `shown_url`, so that none is ever printed with its password.
"""

import ipaddress
import math
import random
import time
import urllib.request
from dataclasses import dataclass
from http.client import IncompleteRead
from typing import Callable, NamedTuple, Optional, Protocol, Tuple, Type, runtime_checkable

import urllib3
from tenacity import RetryCallState, Retrying, retry_if_exception_type
from urllib3.exceptions import LocationParseError
from urllib3.util import Url, parse_url

from .errors import ResendConfigError

LOOPBACK_NAMES = ("localhost",)
REQUIREMENT = "it must be an https:// URL (http:// only to loopback)"
NOT_ASCII = "holds a character that is not ASCII (a pasted quote or dash?)"
NOT_SHOWN = "(not shown)"
RATE_LIMITED = 429
# a `retry-after` is honoured plus up to this share, so that runs sharing a limit (syncs of
# one Resend team, deliveries to one Slack workspace) do not wake together
RETRY_AFTER_SPREAD = 0.25


class UnsafeURLError(ResendConfigError):
    """A URL a secret must not be sent to; the message shows no password (or no URL at all)."""


def is_loopback(host: str) -> bool:
    """`localhost` or a loopback address (`[::1]` as URLs bracket it)."""
    host = host.strip("[]")
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def checked_url(url: str, setting: str, carries: str, *, shown: bool) -> Url:
    """The URL parsed as it will be sent, when a secret (`carries`) may go there: https, or
    http to a loopback host, with a host, no credentials and no backslash.

    Raises:
        UnsafeURLError: in one line naming `setting`; the URL is shown (its password never)
            only when `shown`.
    """
    try:
        parts: Optional[Url] = parse_url(url)
    except LocationParseError:
        parts = None
    reason = _unsafe(url, parts, carries)
    if reason is None and parts is not None:
        return parts
    if not shown:
        what = f"{setting} {reason}; {REQUIREMENT}; the value is not shown"
    else:
        printed = shown_url(url)
        printed = printed if printed == NOT_SHOWN else repr(printed)
        what = f"{setting} {printed} {reason}; {REQUIREMENT}"
    raise UnsafeURLError(what)


def _unsafe(url: str, parts: Optional[Url], carries: str) -> Optional[str]:
    if parts is None or parts.scheme not in ("http", "https") or not parts.host:
        return "is not an http(s) URL"
    if not url.isascii():  # a pasted typographic quote: the parser would send it altered
        return NOT_ASCII
    if "\\" in url:
        return "holds a backslash, which URL parsers read differently"
    if parts.auth:
        return "holds a user name or password (user:password@), which is never sent"
    if parts.scheme == "http" and not is_loopback(parts.host):
        return f"is not HTTPS: {carries} would travel in clear text"
    return None


def shown_url(url: str) -> str:
    """`url` as it may be printed: the password of a `user:password@` part as `***` (a user
    name alone too: it may be a token); a value with an `@` the parser cannot place, not at
    all (what comes before it may be a password)."""
    try:
        parts: Optional[Url] = parse_url(url)
    except LocationParseError:
        parts = None
    if parts is not None and parts.auth:
        user, _, password = parts.auth.partition(":")
        return str(parts._replace(auth=f"{user}:***" if password else "***").url)
    if "@" in url:
        return NOT_SHOWN
    return url


def host_of(url: str) -> str:
    """`host[:port]` of `url`, for a message that names the server (never a user or password)."""
    try:
        return parse_url(url).netloc or NOT_SHOWN
    except LocationParseError:
        return NOT_SHOWN


# -- how a request goes out, and what a failed one is called ----------------------------


def connection_pool(base_url: str) -> urllib3.PoolManager:
    """Keep-alive connections to `base_url`, through the proxy the environment names, if any
    (read once here rather than on every request)."""
    parts = parse_url(base_url)
    proxy = urllib.request.getproxies().get(parts.scheme or "")
    if proxy and not urllib.request.proxy_bypass((parts.host or "").strip("[]")):
        return urllib3.ProxyManager(proxy, maxsize=1)
    return urllib3.PoolManager(maxsize=1)


class TransportFailure(NamedTuple):
    """A request that got no HTTP answer: why, in words, and whether it may have reached the
    server (then the server may have acted on it)."""

    words: str
    sent: bool


def transport_failure(exc: urllib3.exceptions.HTTPError) -> TransportFailure:
    """By urllib3's exception types (and the OS error behind a failed connection), never by
    a message that could hold the URL. `NewConnectionError` comes before the timeouts:
    urllib3 derives it from its connect-timeout error, so a refused connection would
    otherwise read as a timeout."""
    if isinstance(exc, urllib3.exceptions.NameResolutionError):
        return TransportFailure("the host name does not resolve (DNS)", False)
    if isinstance(exc, urllib3.exceptions.NewConnectionError):
        return TransportFailure(_connect_failure(exc), False)
    if isinstance(exc, urllib3.exceptions.ConnectTimeoutError):
        return TransportFailure("connect timed out", False)
    if isinstance(exc, urllib3.exceptions.SSLError):
        return TransportFailure("TLS handshake failed", True)
    if isinstance(exc, urllib3.exceptions.TimeoutError):
        return TransportFailure("no answer in time (read timeout)", True)
    if any(isinstance(arg, IncompleteRead) for arg in exc.args):  # urllib3 wraps http.client's
        return TransportFailure("response body cut short", True)
    if isinstance(exc, urllib3.exceptions.ProtocolError):
        return TransportFailure("connection reset or closed", True)
    return TransportFailure(f"transport error ({type(exc).__name__})", True)


def _connect_failure(exc: urllib3.exceptions.NewConnectionError) -> str:
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, ConnectionRefusedError):
        return "connection refused"
    if isinstance(cause, TimeoutError):
        return "connect timed out"
    if isinstance(cause, OSError) and cause.strerror:
        return f"cannot connect ({cause.strerror.lower()})"
    return "cannot connect"


def header_seconds(response: urllib3.BaseHTTPResponse, name: str) -> Optional[float]:
    """A header that counts seconds (`retry-after`, `ratelimit-reset`), never below 0; None
    when absent or no number of seconds (`nan`, `inf`: no wait can be made of them)."""
    value = response.headers.get(name)
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return max(number, 0.0) if math.isfinite(number) else None


def retry_after(response: urllib3.BaseHTTPResponse) -> Optional[float]:
    """How long the server asks to wait: `retry-after`, or on a 429 the rate-limit window's
    `ratelimit-reset`."""
    seconds = header_seconds(response, "retry-after")
    if seconds is None and response.status == RATE_LIMITED:
        seconds = header_seconds(response, "ratelimit-reset")
    return seconds


# -- how one request is retried -------------------------------------------------------------


@runtime_checkable
class Retryable(Protocol):
    """An exception a sender raises for an exchange worth another attempt (a 5xx, a 429, no
    connection...): its HTTP status (None without an answer) and the wait the server asked
    for, if any."""

    status_code: Optional[int]
    retry_after: Optional[float]


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry one request.

    A 429 is not a failure but a turn to wait: it does not count against `max_attempts`;
    waiting for rate-limit windows is bounded by `max_rate_limit_wait_seconds` instead, and
    so is any single wait a server asks for (a `retry-after` of an hour is not waited out).
    """

    max_attempts: int
    initial_backoff_seconds: float
    max_backoff_seconds: float
    max_rate_limit_wait_seconds: float = 300.0

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Exponential backoff with equal jitter, capped: attempt 1 waits ~initial."""
        base = min(self.max_backoff_seconds, self.initial_backoff_seconds * 2 ** (attempt - 1))
        return float(base / 2 + rng.uniform(0, base / 2))


@dataclass
class AttemptBudget:
    """What one request has used of its retry policy: tenacity's stop condition."""

    policy: RetryPolicy
    failures: int = 0
    rate_limited_seconds: float = 0.0

    def exhausted(self, retry_state: RetryCallState) -> bool:
        wait, budget = retry_state.upcoming_sleep, self.policy.max_rate_limit_wait_seconds
        if is_rate_limit_turn(retry_state):
            self.rate_limited_seconds += wait
            return self.rate_limit_spent
        self.failures += 1
        return self.failures >= self.policy.max_attempts or wait > budget

    @property
    def rate_limit_spent(self) -> bool:
        """The request was given up because its 429s would wait longer than the policy allows."""
        return self.rate_limited_seconds > self.policy.max_rate_limit_wait_seconds


def is_rate_limit_turn(retry_state: RetryCallState) -> bool:
    """A 429 about to be waited on: a turn, counted against the rate-limit budget rather than
    the attempts. A 429 that waits nothing (`retry-after: 0` under a zero backoff) is an
    attempt: it adds nothing to the budget, so as a turn it would be asked again for ever."""
    exc = _exception(retry_state)
    return exc is not None and exc.status_code == RATE_LIMITED and retry_state.upcoming_sleep > 0


def retrying(
    policy: RetryPolicy,
    retryable: Type[Exception],
    *,
    rng: Optional[random.Random] = None,
    sleep: Callable[[float], None] = time.sleep,
    before_sleep: Optional[Callable[[RetryCallState, AttemptBudget], None]] = None,
) -> Tuple[Retrying, AttemptBudget]:
    """Tenacity retrying `retryable` (a `Retryable`) under `policy`, and the budget it stops
    on: the wait is the server's `retry-after` plus up to 25%, else the policy's backoff; a
    429 waits at least that backoff, so that 429s asking 0 s use up the rate-limit budget
    too. `before_sleep` is told the budget: how many attempts failed (429s are none)."""
    budget = AttemptBudget(policy)
    chance = rng or random.Random()

    def before(retry_state: RetryCallState) -> None:
        if before_sleep is not None:
            before_sleep(retry_state, budget)

    def wait(retry_state: RetryCallState) -> float:
        exc = _exception(retry_state)
        backoff = policy.backoff(retry_state.attempt_number, chance)
        if exc is None or exc.retry_after is None:
            return backoff
        asked = exc.retry_after * (1 + chance.uniform(0, RETRY_AFTER_SPREAD))
        return max(asked, backoff) if exc.status_code == RATE_LIMITED else asked

    return (
        Retrying(
            stop=budget.exhausted,
            wait=wait,
            retry=retry_if_exception_type(retryable),
            sleep=sleep,
            before_sleep=before,
            reraise=True,
        ),
        budget,
    )


def _exception(retry_state: RetryCallState) -> Optional[Retryable]:
    outcome = retry_state.outcome
    exc = outcome.exception() if outcome is not None else None
    return exc if isinstance(exc, Retryable) else None
