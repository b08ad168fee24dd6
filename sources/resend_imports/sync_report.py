"""What one run of the resource did: the one counter the summary reads.

Each field has one writer (named beside it), so that what the summary says is counted once,
where it happens. The run hands the report to dlt's resource metrics
(`last_trace.last_extract_info`).
"""

from dataclasses import dataclass, field, fields
from typing import Any, Dict, Iterable, List, Optional


@dataclass
class SyncReport:
    """What one run of the resource did; complete once the listing has been consumed. The
    comments name each field's one writer."""

    mode: str = ""  # run
    status: Optional[str] = None  # run: the filter of a filtered run
    rows: int = 0  # intake: imports taken in (each id once)
    new: int = 0  # intake: those the table did not hold
    updated: int = 0  # intake: those it held in another state (or deleted)
    rewritten: int = 0  # intake: loaded again as before, the table differing elsewhere
    refreshed_by_id: int = 0  # by_id: answers to a GET by id
    not_found: int = 0  # by_id: 404s to a GET by id
    deleted: int = 0  # run: imports marked deleted
    quarantined: int = 0  # recorder: malformed records set aside
    requests: int = 0  # run, from the client
    retries: int = 0  # run, from the client
    rate_limited: int = 0  # run, from the client
    open_imports: int = 0  # run: open imports the next run refreshes
    alerts_raised: int = 0  # recorder: alerts the alerts table did not hold already
    left_over_loaded: bool = False  # fanout (from `pending`): an interrupted run's data loaded
    account: str = ""  # run: the account of this report ("": the total of a run)
    error: Optional[str] = None  # fanout: why the account's part failed (one line, no key)
    accounts: List[Dict[str, Any]] = field(default_factory=list)  # fanout: each account's

    def count_requests(self, stats: Any) -> None:
        """What the account's client (`client.RequestStats`) sent."""
        self.requests, self.retries = stats.requests, stats.retries
        self.rate_limited = stats.rate_limited

    @property
    def failed_accounts(self) -> List["SyncReport"]:
        return [report for report in self.per_account() if report.error is not None]

    def per_account(self) -> List["SyncReport"]:
        return [SyncReport(**report) for report in self.accounts]


_COUNTERS = [f.name for f in fields(SyncReport) if f.type in (int, "int")]


def total(reports: Iterable[SyncReport]) -> SyncReport:
    """The report of a run of several accounts: their counters summed, each one's kept."""
    reports = list(reports)
    modes = {report.mode for report in reports if report.error is None}
    result = SyncReport(
        mode=modes.pop() if len(modes) == 1 else "",
        status=reports[0].status if reports else None,
        accounts=[vars(report) for report in reports],
    )
    for name in _COUNTERS:
        setattr(result, name, sum(getattr(report, name) for report in reports))
    return result
