"""Errors raised by the Resend source. Every message is one line and never holds the API key."""

from typing import Optional


class ResendError(Exception):
    """Base class of every expected failure of the source."""


class ResendConfigError(ResendError):
    """A configuration value is missing or invalid."""


class ResendAPIError(ResendError):
    """Resend answered with an error status that is not worth retrying, or retries ran out."""

    def __init__(
        self,
        status_code: Optional[int],
        name: str,
        message: str,
        *,
        method: str = "GET",
        path: str = "",
    ) -> None:
        self.status_code = status_code
        self.name = name
        self.message = message
        self.method = method
        self.path = path
        status = f"HTTP {status_code}" if status_code is not None else "no response"
        super().__init__(f"Resend {method} {path} failed: {status} {name}: {message}")


class ResendAuthError(ResendAPIError):
    """Resend rejected the API key (401 or 403)."""


class RetryableResponseError(ResendAPIError):
    """A response worth retrying: 429, 5xx, or a 2xx body that is not valid JSON."""

    def __init__(
        self,
        status_code: Optional[int],
        name: str,
        message: str,
        *,
        method: str = "GET",
        path: str = "",
        retry_after: Optional[float] = None,
    ) -> None:
        super().__init__(status_code, name, message, method=method, path=path)
        self.retry_after = retry_after


class ResendDataError(ResendError):
    """Resend returned data the connector cannot load safely (bad timestamp, no id, bad paging)."""
