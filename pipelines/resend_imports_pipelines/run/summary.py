"""What one sync did, for people: the source's report, where it went, what delivery did,
and the lines the command prints."""

from dataclasses import dataclass
from typing import Optional

from resend_imports import SyncReport
from resend_imports.accounts import DEFAULT_ACCOUNT
from resend_imports.quarantine import QUARANTINE_TABLE

from ..delivery import DeliveryReport
from ..formatting import count, elapsed

MODE_TEXT = {
    "first": "first run: no state in the destination, every import listed",
    "full": "full refresh",
    "scheduled full": "scheduled full listing",
    "incremental": "incremental run",
    "filtered": "filtered run",
    "repair": "repair: the table did not hold what the state describes, every import listed",
    "another key": "another API key: every import listed and compared with the table",
}

LEFT_OVER_LINE = "  before listing, loaded the data an interrupted run left (the WARNING above)"


@dataclass
class SyncSummary(SyncReport):
    """What one sync did (the source's report), and where it went, for people and tests."""

    elapsed_seconds: float = 0.0
    destination: str = ""
    table: str = ""
    delivery: Optional[DeliveryReport] = None  # None: alerts not delivered by this run

    def lines(self) -> list[str]:
        """The summary: where the data went and what changed, then what it cost."""
        where = f"{self.table} on {self.destination}"
        accounts = self.per_account()
        if len(accounts) > 1 or any(r.account != DEFAULT_ACCOUNT for r in accounts):
            return self._lines_of_accounts(where, accounts)
        mode = MODE_TEXT.get(self.mode, self.mode)
        rows = count(self.rows)
        left_over = [LEFT_OVER_LINE] if self.left_over_loaded else []
        if self.mode == "filtered":
            first = f"listed {rows} contact imports with status {self.status} into {where}"
            second = f"  {_changed(self)}"
            mode = "filtered run: the incremental state is left alone"
        elif self.new == self.updated == self.deleted == self.rewritten == 0:
            first = f"nothing changed in {where}: {rows} contact imports read, all as before"
            if left_over:  # the table did change, before the listing: said here
                first = (
                    f"loaded into {where} the data an interrupted run left; since then nothing"
                    f" changed: {rows} contact imports read, all as before"
                )
                left_over = []
            second = f"  {_still_open(self)}"
        else:
            first = f"synced {rows} contact imports into {where}"
            second = f"  {_changes(self)}"
        return [f"{first} ({mode})", second, *left_over, *self._costs()]

    def _lines_of_accounts(self, where: str, accounts: list[SyncReport]) -> list[str]:
        """One line per account, then the total."""
        lines = [
            f"synced {count(self.rows)} contact imports of {len(accounts)} accounts into {where}"
        ]
        for report in accounts:
            if report.error is not None:
                lines.append(
                    f"  account {report.account}: FAILED (state not advanced): {report.error}"
                )
                continue
            mode = MODE_TEXT.get(report.mode, report.mode).split(":")[0]
            lines.append(
                f"  account {report.account}: {_changes(report)};"
                f" requests {count(report.requests)}"
                f" ({mode})"
            )
        lines.append(f"  total: {_changes(self)}")
        if self.left_over_loaded:
            lines.append(LEFT_OVER_LINE)
        return lines + self._costs()

    def _costs(self) -> list[str]:
        lines = []
        if self.quarantined:
            lines.append(
                f"  set aside {count(self.quarantined)} malformed record"
                f"{'s' if self.quarantined > 1 else ''} in"
                f" {self.table.split('.')[0]}.{QUARANTINE_TABLE} (the WARNING lines say why)"
            )
        if self.rewritten:  # the table differed from Resend without a change to record
            lines.append(
                f"  loaded again {count(self.rewritten)} row{'s' if self.rewritten > 1 else ''}"
                " that differed from Resend outside status and counts"
            )
        delivery = self.delivery
        if self.alerts_raised or (delivery and (any(delivery.sent.values()) or delivery.waiting)):
            text = f"  alerts: raised {count(self.alerts_raised)}"
            lines.append(text + (f"; {delivery.line()}" if delivery else ""))
        lines.append(
            f"  requests {count(self.requests)}"
            f" (by id {count(self.refreshed_by_id + self.not_found)}),"
            f" retries {count(self.retries)}, rate-limited {count(self.rate_limited)};"
            f" {elapsed(self.elapsed_seconds)}"
        )
        return lines


def _changes(report: SyncReport) -> str:
    return f"{_changed(report)}; {_still_open(report)}"


def _changed(report: SyncReport) -> str:
    unchanged = report.rows - report.new - report.updated
    return f"new {count(report.new)}, updated {count(report.updated)}, unchanged {count(unchanged)}"


def _still_open(report: SyncReport) -> str:
    deletions = ""
    if report.deleted or report.not_found:
        deletions = (
            f"; marked deleted {count(report.deleted)}, answered 404 {count(report.not_found)}"
        )
    return f"still open {count(report.open_imports)}{deletions}"
