"""An exception and everything behind it, through dlt's wrappers: failures are classified by
the types found there, never by message text."""

from typing import Iterator, NamedTuple, Optional, Tuple

from dlt.load.exceptions import LoadClientJobFailed, LoadClientJobRetry


def causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception, what dlt wrapped in it, and its causes and contexts."""
    seen: set[int] = set()
    pending = [exc]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for linked in (
            getattr(current, "exception", None),
            getattr(current, "job_exception", None),  # dlt's LoadPackageAborted
            getattr(current, "client_exception", None),  # dlt's load job exceptions
            current.__cause__,
            current.__context__,
        ):
            if isinstance(linked, BaseException):
                pending.append(linked)


def refused_rows(exc: BaseException) -> Optional[Tuple[str, str]]:
    """The table whose rows the destination refused behind `exc`, and its reason in one line
    (the database's first line, never dlt's traceback of the job); None for other failures."""
    job = next((c for c in causes(exc) if isinstance(c, LoadClientJobFailed)), None)
    if job is None:
        return None
    refusal = str(job.client_exception or job.failed_message).strip().splitlines()
    return job.job_id.split(".")[0], refusal[0] if refusal else "no reason given"


class RetriedJob(NamedTuple):
    """A load job dlt gave up retrying for now (its package stays pending)."""

    table: str
    attempts: int
    reason: str  # the database's first line


def retried_job(exc: BaseException) -> Optional[RetriedJob]:
    """The load job behind `exc` that failed for a passing cause on each of dlt's attempts (a
    statement timeout, a lock held too long), or None for other failures. dlt keeps only the
    text of the database's error when the job was restored from its package: then its last
    line."""
    job = next((c for c in causes(exc) if isinstance(c, LoadClientJobRetry)), None)
    if job is None:
        return None
    if job.client_exception is not None:
        reason = str(job.client_exception).strip().splitlines()[:1]
    else:
        reason = [_last_line(job.failed_message or "")]
    return RetriedJob(job.job_id.split(".")[0], job.retry_count, reason[0] or "no reason given")


def _last_line(traceback: str) -> str:
    """The last line of a formatted traceback, without the exception's dotted class name."""
    lines = [line.strip() for line in traceback.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    name, _, text = lines[-1].partition(": ")
    return text if text and " " not in name else lines[-1]
