"""Errors raised by the Resend source. Every message is one line and never holds the API key."""

from typing import Any, Optional

from .settings import TABLE_NAME


def recreated_next_run(table: str) -> str:
    """What the next run does with one of the written tables once a person removed it: the
    advice of every line that stops the run on a table no run can put right by itself."""
    if table == TABLE_NAME:
        return (
            "the next run creates it and lists every import into it again (rows marked"
            " deleted are then gone)"
        )
    return "the next run creates it again, empty (the rows it held are then gone)"


class ResendError(Exception):
    """Base class of every expected failure of the source."""


class ResendConfigError(ResendError):
    """A configuration value is missing or invalid."""


class MissingAPIKeyError(ResendConfigError):
    """No API key is configured: the run stops before any request."""


class LakeTableUnreadableError(ResendError):
    """A Delta or Iceberg table lists a file its bucket no longer holds (deleted by a person):
    no reader can read it, and no run can put it right in place."""


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


class ResendNoAnswerError(ResendAPIError):
    """No attempt of a request got a complete HTTP answer: the server was not reached (DNS,
    a refused connection, a connect timeout), or an exchange broke off (a reset, a read
    timeout, a body cut short)."""

    def __init__(
        self, host: str, words: str, reached: bool, attempts: int, seconds: float, path: str
    ) -> None:
        super().__init__(None, "no_answer", words, path=path)
        what = f"no complete answer from {host}" if reached else f"cannot reach {host}"
        plural = "s" if attempts > 1 else ""
        self.args = (
            f"{what}: {words}; gave up after {attempts} attempt{plural} in {seconds:.1f} s",
        )


class ResendAuthError(ResendAPIError):
    """Resend rejected the API key (401 or 403)."""


class RetryableResponseError(ResendAPIError):
    """A response worth retrying: 429, 5xx, or a 2xx body that is not valid JSON."""

    def __init__(self, *args: Any, retry_after: Optional[float] = None, **kwargs: Any) -> None:
        """As `ResendAPIError`, with the wait the answer asked for (`retry-after`), if any."""
        super().__init__(*args, **kwargs)
        self.retry_after = retry_after


class ResendDataError(ResendError):
    """Resend returned data the connector cannot load safely (bad paging, a body that is not
    an object)."""


class MalformedImportError(ResendDataError):
    """One ContactImport that cannot be loaded as typed (no id, an unparseable timestamp, a
    count that is not a whole number...): it is set aside, the others load."""

    def __init__(self, import_id: Optional[str], reason: str) -> None:
        self.import_id = import_id
        self.reason = reason
        super().__init__(f"import {import_id}: {reason}" if import_id else reason)


class DestinationReadError(ResendError):
    """The table could not be read for a check the run depends on (a lock held by another
    process, a lost connection): the run stops before loading anything."""


class TableStructureError(ResendError):
    """A table lacks what its rows need to be told apart (a key column a person dropped, or
    the account of a table of several accounts): no run can repair it without losing rows, so
    the run stops before any request and says what a person can do."""


class ColumnTypeError(ResendError):
    """A column of the table holds a value a complete listing cannot compare as the type the
    resource declares (a person changed the column's type): the run stops before loading."""
