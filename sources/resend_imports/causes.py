"""An exception and everything behind it, through dlt's wrappers: failures are classified by
the types found there, never by message text."""

from typing import Iterator, Optional, Tuple

from dlt.load.exceptions import LoadClientJobFailed


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
