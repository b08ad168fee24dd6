"""Delivery of the alerts a sync raised (the outbox, `contact_import_alerts`) to the
configured channels, once per installation.

After a load, the alerts not yet delivered are read from the destination and sent in messages
of up to `ALERTS_PER_MESSAGE`; each message is written to the delivery ledger before it is sent
and again once the channel accepted it, then its alerts are marked delivered in the destination
(per channel, then `delivered_at` once every configured channel has them). An alert the ledger
says a channel accepted already (a restored backup, a new dataset, a moved destination: their
marks are gone) is only marked, not sent. A message sent without a known answer is sent again
by the next delivery as it was, the same alerts under the same `Idempotency-Key` (see `send`
for what is retried within a run).

So no alert is lost and none is sent twice once recorded; a kill between a channel's acceptance
and the record, or an acceptance that does not reach us in time, sends that message again,
which is why every alert carries its `alert_key`. The hook URLs are secrets: no log line,
error, summary or the ledger shows them (only the channel's name).
"""

import hashlib
import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Dict, Iterator, List, Optional, Sequence

import dlt
import urllib3
from dlt.destinations.exceptions import DatabaseUndefinedRelation

from resend_imports.alerts import ALERTS_TABLE
from resend_imports.errors import ResendError

from .channels import ALERTS_PER_MESSAGE, Channel
from .ledger import DeliveryLedger, ledger_path, open_ledger
from .outbox import mark, mark_delivered, undelivered, waiting
from .send import DeliveryFailedError, DeliveryPolicy, post

logger = logging.getLogger("resend_imports")


class AlertDeliveryError(ResendError):
    """Alerts stay undelivered after this run (a channel down, refusing, or timing out)."""


@dataclass
class DeliveryReport:
    sent: Dict[str, int] = field(default_factory=dict)  # alerts each channel took this run
    waiting: int = 0  # alerts not yet delivered to every configured channel after this run
    # alerts the ledger says each channel accepted before, marked in the destination, not sent
    known: Dict[str, int] = field(default_factory=dict)
    problems: List[str] = field(default_factory=list)  # one line per channel that failed

    def line(self) -> str:
        if not self.sent:
            return "no channel configured: they wait in the table (see README, Alerts)"
        sent = ", ".join(f"{channel} {count}" for channel, count in self.sent.items())
        text = f"sent to {sent}; {self.waiting} waiting"
        if any(self.known.values()):
            known = ", ".join(f"{channel} {count}" for channel, count in self.known.items())
            text += f"; accepted before (delivery ledger), marked without sending: {known}"
        return text + "".join(f"; {problem}" for problem in self.problems)


def deliver_pending(
    pipeline: dlt.Pipeline,
    channels: Sequence[Channel],
    policy: Optional[DeliveryPolicy] = None,
) -> DeliveryReport:
    """Sends every alert not yet delivered that the ledger has no acceptance of; marks each
    message's alerts as it is accepted. The caller holds the writer lock (the ledger's)."""
    report = DeliveryReport(sent={channel.name: 0 for channel in channels})
    if not channels:
        return report  # nothing to send to: the alerts wait in the table, not counted
    policy = policy or DeliveryPolicy.from_config()
    http = policy.pool()
    with pipeline.sql_client() as client, _urllib3_quiet():
        table = client.make_qualified_table_name(ALERTS_TABLE)
        try:
            waiting(client, table)
        except DatabaseUndefinedRelation:
            return report  # no alert was ever raised into this dataset
        with open_ledger(ledger_path(pipeline)) as ledger:
            for channel in channels:
                _deliver_to(channel, client, table, ledger, http, policy, report)
        mark_delivered(client, table, [channel.column for channel in channels], datetime.now(UTC))
        report.waiting = waiting(client, table)
    for problem in report.problems:
        logger.warning("alerts: %s", problem)
    return report


def _deliver_to(
    channel: Channel,
    client: Any,
    table: str,
    ledger: DeliveryLedger,
    http: urllib3.PoolManager,
    policy: DeliveryPolicy,
    report: DeliveryReport,
) -> None:
    """One channel: marks what it accepted before, then sends the rest until one fails."""
    alerts = undelivered(client, table, channel.column)
    accepted = ledger.accepted(channel.name)
    report.known[channel.name] = _mark_known(client, table, channel.column, alerts, accepted)
    fresh = [alert for alert in alerts if alert["alert_key"] not in accepted]
    left = len(fresh)
    for message in _messages(fresh, ledger.unanswered(channel.name)):
        left -= len(message)
        keys = [alert["alert_key"] for alert in message]
        idempotency_key = _message_key(keys)
        ledger.sending(channel.name, idempotency_key, keys, datetime.now(UTC))
        try:
            post(http, channel.url, channel.render(message, left), policy, idempotency_key)
        except DeliveryFailedError as exc:
            report.problems.append(
                f"{channel.name}: {exc.reason}; {left + len(message)} alerts wait for the next run"
            )
            return
        accepted_at = datetime.now(UTC)
        try:
            ledger.accept(channel.name, keys, accepted_at)
        finally:  # the destination's mark, also when the ledger could not take the record
            mark(client, table, channel.column, keys, accepted_at)
        report.sent[channel.name] += len(message)


def _mark_known(
    client: Any,
    table: str,
    column: str,
    alerts: List[Dict[str, Any]],
    accepted: Dict[str, datetime],
) -> int:
    """Marks the alerts the channel accepted before (the ledger says when), one statement per
    message that carried them; how many."""
    by_time: Dict[datetime, List[str]] = {}
    for alert in alerts:
        if alert["alert_key"] in accepted:
            by_time.setdefault(accepted[alert["alert_key"]], []).append(alert["alert_key"])
    for accepted_at, keys in by_time.items():
        mark(client, table, column, keys, accepted_at)
    return sum(len(keys) for keys in by_time.values())


def _messages(
    alerts: List[Dict[str, Any]], unanswered: List[List[str]]
) -> List[List[Dict[str, Any]]]:
    """The messages sent before without a known answer first, as they were (those of their
    alerts still undelivered), then the other alerts, in order, `ALERTS_PER_MESSAGE` a message."""
    by_key = {alert["alert_key"]: alert for alert in alerts}
    messages = []
    for keys in unanswered:
        message = [by_key.pop(key) for key in keys if key in by_key]
        if message:
            messages.append(message)
    rest = [alert for alert in alerts if alert["alert_key"] in by_key]
    for start in range(0, len(rest), ALERTS_PER_MESSAGE):
        messages.append(rest[start : start + ALERTS_PER_MESSAGE])
    return messages


def _message_key(keys: Sequence[str]) -> str:
    """The `Idempotency-Key` of a message: sha256 of its alert keys, one a line, in order. The
    same message sent again (it is never regrouped) carries the same one."""
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()


@contextmanager
def _urllib3_quiet() -> Iterator[None]:
    """urllib3 logs each request's path at DEBUG, and a hook's path is its secret."""
    pool_logger = logging.getLogger("urllib3.connectionpool")
    level = pool_logger.level
    pool_logger.setLevel(max(level, logging.INFO))
    try:
        yield
    finally:
        pool_logger.setLevel(level)
