"""Sending one message to a channel: one POST, retried by the source's HTTP vocabulary
(`sources/resend_imports/http.py`, as the API client retries), and what became of it.

A channel that cannot be reached (refused, unknown host, connect timeout) or answers 5xx or
429 did not take the message: it is retried within the run. A message sent without an answer
(a read timeout, a reset) may have been taken: it is not retried in the run but waits, like
everything still undelivered, for the next one. Failures are told by exception type and
status, never by a message that could carry the URL.
"""

from typing import Dict, Optional

import urllib3
from dlt.common.configuration import configspec
from dlt.common.configuration.specs import BaseConfiguration

from resend_imports.config import ALERTS_FALLBACK, ALERTS_SECTIONS, resolve
from resend_imports.errors import ResendConfigError
from resend_imports.http import (
    RATE_LIMITED,
    RetryPolicy,
    retry_after,
    retrying,
    transport_failure,
)
from resend_imports.options import SECONDS, TIMEOUT_SECONDS


class DeliveryFailedError(Exception):
    """The message was not delivered; `reason` says why in words that never hold the URL."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RetryableDeliveryError(DeliveryFailedError):
    """Not taken, worth another attempt: 5xx, 429, or no connection (a `Retryable`)."""

    def __init__(
        self, reason: str, status_code: Optional[int] = None, retry_after: Optional[float] = None
    ) -> None:
        super().__init__(reason)
        self.status_code = status_code
        self.retry_after = retry_after


@configspec
class DeliveryPolicy(BaseConfiguration):
    """`[sources.resend_imports.alerts]`: attempts per message, backoff and timeouts."""

    max_attempts: int = 4
    initial_backoff_seconds: float = 1.0
    max_backoff_seconds: float = 30.0
    connect_timeout_seconds: float = 5.0
    read_timeout_seconds: float = 10.0

    def on_resolved(self) -> None:
        if self.max_attempts < 1:
            raise ResendConfigError(
                f"alerts max_attempts must be at least 1, got {self.max_attempts}{ALERTS_FALLBACK}"
            )
        where = ALERTS_FALLBACK
        SECONDS.check("alerts initial_backoff_seconds", self.initial_backoff_seconds, where)
        SECONDS.check("alerts max_backoff_seconds", self.max_backoff_seconds, where)
        TIMEOUT_SECONDS.check("alerts connect_timeout_seconds", self.connect_timeout_seconds, where)
        TIMEOUT_SECONDS.check("alerts read_timeout_seconds", self.read_timeout_seconds, where)

    @classmethod
    def from_config(cls) -> "DeliveryPolicy":
        return resolve(cls(), ALERTS_SECTIONS)

    @property
    def retry(self) -> RetryPolicy:
        """A channel's 429s are waited out for as long as its retries could wait in all."""
        budget = (self.max_attempts - 1) * self.max_backoff_seconds
        return RetryPolicy(
            self.max_attempts, self.initial_backoff_seconds, self.max_backoff_seconds, budget
        )

    def pool(self) -> urllib3.PoolManager:
        timeout = urllib3.Timeout(
            connect=self.connect_timeout_seconds, read=self.read_timeout_seconds
        )
        return urllib3.PoolManager(timeout=timeout, retries=False)


def post(
    http: urllib3.PoolManager,
    url: str,
    body: bytes,
    policy: DeliveryPolicy,
    idempotency_key: str,
) -> None:
    """POSTs `body`, retrying what was not taken.

    Raises:
        DeliveryFailedError: the message was not taken, or may have been without an answer.
    """
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "resend-imports",
        "Idempotency-Key": idempotency_key,
    }
    attempt, _ = retrying(policy.retry, RetryableDeliveryError)
    attempt(_post_once, http, url, body, headers)


def _post_once(http: urllib3.PoolManager, url: str, body: bytes, headers: Dict[str, str]) -> None:
    """One POST, judged by its status alone: the answer's body is never read.

    A 2xx is acceptance whatever its body does: cut short, or late beyond the read timeout,
    reading it would turn a message the channel took into one "sent without an answer", sent
    again by the next run. The connection is closed instead of reused (a run sends few
    messages), since a body left unread cannot be skipped on it.
    """
    try:
        response = http.request("POST", url, body=body, headers=headers, preload_content=False)
    except urllib3.exceptions.HTTPError as exc:
        failure = transport_failure(exc)
        if failure.sent:
            raise DeliveryFailedError(f"sent, but {failure.words}") from None
        raise RetryableDeliveryError(failure.words) from None
    response.close()
    response.release_conn()  # closed: the pool opens a new one for the next message
    if response.status == RATE_LIMITED or response.status >= 500:
        raise RetryableDeliveryError(
            f"answered {response.status}", response.status, retry_after(response)
        )
    if response.status >= 300:
        raise DeliveryFailedError(f"answered {response.status} (not retried: check the URL)")
