"""An exception and everything behind it, through dlt's wrappers: failures are classified by
the types found there, never by message text."""

from typing import Iterator


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
