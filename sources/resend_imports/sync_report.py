"""What one run of the resource did: the one counter the summary reads.

Each field has one writer (named beside it), so that what the summary says is counted once,
where it happens. The run hands the report to dlt's resource metrics
(`last_trace.last_extract_info`).
"""

from dataclasses import dataclass
from typing import Optional


@dataclass
class SyncReport:
    """What one run of the resource did; complete once the listing has been consumed. The
    comments name each field's one writer."""

    mode: str = ""  # run
    status: Optional[str] = None  # run: the filter of a filtered run
    rows: int = 0  # intake: imports taken in (each id once)
    new: int = 0  # intake: those the table did not hold
    updated: int = 0  # intake: those it held in another state (or deleted)
    refreshed_by_id: int = 0  # by_id: answers to a GET by id
    not_found: int = 0  # by_id: 404s to a GET by id
    deleted: int = 0  # run: imports marked deleted
    quarantined: int = 0  # recorder: malformed records set aside
    requests: int = 0  # run, from the client
    retries: int = 0  # run, from the client
    rate_limited: int = 0  # run, from the client
    open_imports: int = 0  # run: open imports the next run refreshes
    alerts_raised: int = 0  # recorder: alerts the alerts table did not hold already
