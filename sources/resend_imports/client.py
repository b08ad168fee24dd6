"""HTTP client for Resend's contact imports: auth, pacing on rate-limit headers and retries.

Every HTTP request is retried on its own (tenacity), never a whole listing, so a retry can
never yield a row twice.
"""

import hashlib
import logging
import random
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional
from urllib.parse import quote

import urllib3
from tenacity import RetryCallState

from .answers import (
    JSONObject,
    error_fields,
    exhausted_reason,
    json_object,
    pacing_line,
    pacing_reason,
    progress_line,
    retry_words,
)
from .errors import (
    ResendAPIError,
    ResendAuthError,
    ResendDataError,
    ResendNoAnswerError,
    RetryableResponseError,
)
from .http import (
    RATE_LIMITED,
    AttemptBudget,
    RetryPolicy,
    checked_url,
    connection_pool,
    header_seconds,
    host_of,
    is_rate_limit_turn,
    retry_after,
    retrying,
    shown_url,
    transport_failure,
)
from .settings import LIST_PATH, PROGRESS_EVERY_SECONDS, RETRYABLE_STATUSES

__all__ = ["RequestStats", "ResendClient", "RetryPolicy", "validate_base_url"]

logger = logging.getLogger("resend_imports")

UNREACHABLE = "unreachable"  # the name of a failed exchange that never reached the server
# a wait for the rate-limit window longer than this is logged: a run never waits silently
PACING_LOGGED_SECONDS = 5.0


@dataclass
class RequestStats:
    """What the client did, for the run summary."""

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    paced_seconds: float = 0.0


def validate_base_url(base_url: str) -> str:
    """Returns the base URL without a trailing slash, when the key may be sent there (see
    `http.checked_url`: https, or plain http to loopback)."""
    checked_url(base_url, "base_url", "the API key", shown=True)
    return base_url.rstrip("/")


class ResendClient:
    """Talks to the two GET endpoints of contact imports."""

    def __init__(
        self,
        api_key: str,
        base_url: str,
        *,
        user_agent: str,
        retry_policy: RetryPolicy,
        connect_timeout: float,
        read_timeout: float,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: Optional[random.Random] = None,
        progress_every: float = PROGRESS_EVERY_SECONDS,
    ) -> None:
        self.base_url = validate_base_url(base_url)
        self.progress_every = progress_every
        self.has_api_key = bool(api_key)
        self._key_digest = hashlib.sha256(api_key.encode()).digest()
        self.retry_policy = retry_policy
        self.timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)
        self.stats = RequestStats()
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        self._not_before = 0.0
        self._reset_asked = 0.0  # the `ratelimit-reset` that set `_not_before`, for messages
        self._pool = connection_pool(self.base_url)
        self._headers = {
            "Authorization": f"Bearer {api_key}",
            "User-Agent": user_agent,
            "Accept": "application/json",
        }

    def __repr__(self) -> str:
        return f"ResendClient(base_url={shown_url(self.base_url)!r})"

    def close(self) -> None:
        self._pool.clear()

    def key_fingerprint(self, salt: str) -> str:
        """A salted hash of the API key: tells a run whether the key that loaded a table is
        the one it holds, without the key (or an unsalted hash of it) ever being stored."""
        return hashlib.sha256(salt.encode() + self._key_digest).hexdigest()[:32]

    def list_page(
        self, limit: int, after: Optional[str] = None, status: Optional[str] = None
    ) -> JSONObject:
        """One page of `GET /contacts/imports`, validated to hold `data` and `has_more`."""
        params: Dict[str, Any] = {"limit": limit}
        if after is not None:
            params["after"] = after
        if status is not None:
            params["status"] = status
        body = self.request(LIST_PATH, params)
        if not isinstance(body.get("data"), list):
            raise ResendDataError(f"GET {LIST_PATH}: the list response has no 'data' array")
        if not isinstance(body.get("has_more"), bool):
            raise ResendDataError(f"GET {LIST_PATH}: the list response has no boolean 'has_more'")
        return body

    def get_import(self, import_id: str) -> Optional[JSONObject]:
        """`GET /contacts/imports/{id}`; None when Resend no longer knows the import."""
        try:
            return self.request(f"{LIST_PATH}/{quote(import_id, safe='')}")
        except ResendAPIError as exc:
            if exc.status_code == 404:
                return None
            raise

    def iter_pages(
        self, page_size: int, status: Optional[str] = None, expected: Optional[int] = None
    ) -> Iterator[List[JSONObject]]:
        """Pages through the list, newest first, until `has_more` is false, logging progress
        every `progress_every` seconds (never when 0; against `expected` imports, if known).

        Raises:
            ResendDataError: `has_more` with an empty page, or a cursor that repeats.
        """
        used_cursors: set[str] = set()
        items = 0
        started = last_report = self._clock()
        cursor: Optional[str] = None
        while True:
            body = self.list_page(page_size, after=cursor, status=status)
            data: List[JSONObject] = body["data"]
            items += len(data)
            now = self._clock()
            if self.progress_every > 0 and now - last_report >= self.progress_every:
                last_report = now
                logger.info(progress_line(items, self.stats.requests, now - started, expected))
            yield data
            if not body["has_more"]:
                return
            cursor = self._next_cursor(data, cursor, used_cursors)

    @staticmethod
    def _next_cursor(data: List[JSONObject], cursor: Optional[str], used_cursors: set[str]) -> str:
        """The id of the last import of the page that has one: a malformed record at the end
        of a page (set aside by the run) does not stop the paging; it is listed again as the
        first of the next page."""
        if not data:
            raise ResendDataError(
                f"GET {LIST_PATH}: has_more is true but the page is empty (after={cursor})"
            )
        last_id: Optional[str] = next(
            (
                str(item["id"])
                for item in reversed(data)
                if isinstance(item, dict) and isinstance(item.get("id"), str) and item["id"]
            ),
            None,
        )
        if last_id is None:
            raise ResendDataError(f"GET {LIST_PATH}: no import of a page has an id to page on")
        if last_id in used_cursors:
            raise ResendDataError(
                f"GET {LIST_PATH}: cursor {last_id} repeats; paging would never end"
            )
        used_cursors.add(last_id)
        return last_id

    def request(self, path: str, params: Optional[Dict[str, Any]] = None) -> JSONObject:
        """GET `path` with retries; returns the JSON object of a 2xx answer.

        Raises:
            ResendAuthError: 401 or 403.
            ResendAPIError: any other status not worth retrying, or retries exhausted.
        """
        attempt, budget = retrying(
            self.retry_policy,
            RetryableResponseError,
            rng=self._rng,
            sleep=self._sleep,
            before_sleep=self._log_retry,
        )
        started = self._clock()
        try:
            return attempt(self._send, path, params)
        except RetryableResponseError as exc:
            if exc.status_code is None:  # no attempt got an answer: say which server
                seconds = self._clock() - started
                reached = exc.name != UNREACHABLE
                raise ResendNoAnswerError(
                    host_of(self.base_url), exc.message, reached, budget.failures, seconds, path
                ) from None
            requests = attempt.statistics.get("attempt_number", 0)
            message = exhausted_reason(budget, exc, requests)
            raise ResendAPIError(exc.status_code, "retries_exhausted", message, path=path) from None

    def _send(self, path: str, params: Optional[Dict[str, Any]]) -> JSONObject:
        self._pace(path)
        self.stats.requests += 1
        try:
            response = self._pool.request(
                "GET",
                self.base_url + path,
                fields=params,
                headers=self._headers,
                timeout=self.timeout,
                redirect=False,  # the key must not follow a redirect to another host
                retries=False,  # tenacity retries, one request at a time
            )
            self._note_rate_limit(response)
            status = response.status
            if 200 <= status < 300:
                return json_object(response, path)
        except urllib3.exceptions.HTTPError as exc:
            failure = transport_failure(exc)
            name = "transport_error" if failure.sent else UNREACHABLE
            raise RetryableResponseError(None, name, failure.words, path=path) from None
        name, message = error_fields(response)
        if status in RETRYABLE_STATUSES:
            if status == RATE_LIMITED:
                self.stats.rate_limited += 1
            wait = retry_after(response)
            raise RetryableResponseError(status, name, message, path=path, retry_after=wait)
        if status in (401, 403):
            raise ResendAuthError(status, name, message, path=path)
        if 300 <= status < 400:
            message = "redirects are not followed (the API key would go along)"
        raise ResendAPIError(status, name, message, path=path)

    def _note_rate_limit(self, response: urllib3.BaseHTTPResponse) -> None:
        remaining = header_seconds(response, "ratelimit-remaining")
        reset = header_seconds(response, "ratelimit-reset")
        if remaining is not None and remaining < 1 and reset is not None:
            if self._clock() + reset > self._not_before:
                self._not_before, self._reset_asked = self._clock() + reset, reset

    def _pace(self, path: str) -> None:
        """Waits out a used-up rate-limit window before the next request, within the budget
        of a rate-limit wait: a daily quota's `ratelimit-reset` is not waited out for hours.

        Raises:
            ResendAPIError: the window ends later than `max_rate_limit_wait_seconds` allows.
        """
        wait = self._not_before - self._clock()
        if wait <= 0:
            return
        if wait > self.retry_policy.max_rate_limit_wait_seconds:
            reason = pacing_reason(self.retry_policy, self._reset_asked)
            raise ResendAPIError(RATE_LIMITED, "rate_limit_exceeded", reason, path=path)
        if wait > PACING_LOGGED_SECONDS:
            logger.info(pacing_line(wait, path, self._reset_asked))
        self.stats.paced_seconds += wait
        self._sleep(wait)

    def _log_retry(self, retry_state: RetryCallState, budget: AttemptBudget) -> None:
        self.stats.retries += 1
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        why = retry_words(exc, budget, is_rate_limit_turn(retry_state))
        path = getattr(exc, "path", "?")
        logger.warning("retrying GET %s in %.2fs%s", path, retry_state.upcoming_sleep, why)
