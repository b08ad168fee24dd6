"""Delivery of the alerts a sync raised (`contact_import_alerts`, the outbox) to Slack and to
a JSON webhook, once per installation.

After a load, the alerts not yet delivered are read from the destination and sent in messages
of up to `ALERTS_PER_MESSAGE`; each message is written to the delivery ledger before it is sent
and again once the channel accepted it, then its alerts are marked delivered in the destination
(per channel, then `delivered_at` once every configured channel has them). An alert the ledger
says a channel accepted already (a restored backup, a new dataset, a moved destination: their
marks are gone) is only marked, not sent. A message sent without a known answer is sent again
by the next delivery as it was, the same alerts under the same `Idempotency-Key`.

A channel that cannot be reached (refused, unknown host, connect timeout) or answers 5xx or 429
is retried within the run (tenacity, `retry-after` respected): it did not take the message. A
message sent without an answer (a read timeout, a reset) may have been taken: it is not
retried in the run but waits, like everything still undelivered, for the next run. So no
alert is lost and none is sent twice once recorded; a kill between a channel's acceptance and
the record, or an acceptance that does not reach us in time, sends that message again, which
is why every alert carries its `alert_key`.

The hook URLs are secrets: no log line, error, summary or the ledger shows them (only the
channel's name).
"""

import hashlib
import ipaddress
import json
import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import dlt
import urllib3
from dlt.common.destination.exceptions import DestinationException, SqlClientNotAvailable
from dlt.destinations.exceptions import DatabaseUndefinedRelation
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt
from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

from sources.resend_imports.alerts import (
    ALERT_COLUMNS,
    ALERTS_TABLE,
    CONFIG_SECTION,
    config_values,
)
from sources.resend_imports.errors import ResendConfigError, ResendError
from sources.resend_imports.settings import COUNT_FIELDS

from .delivery_ledger import DeliveryLedger, ledger_path, open_ledger

logger = logging.getLogger("resend_imports")

ALERTS_PER_MESSAGE = 20
WEBHOOK_URL_KEY = f"{CONFIG_SECTION}.webhook_url"
_LOOPBACK_NAMES = ("localhost",)
# the columns of a payload: every column of the outbox but the per-channel marks
PAYLOAD_COLUMNS = [
    name for name in ALERT_COLUMNS if name not in ("slack_delivered_at", "webhook_delivered_at")
]


class AlertDeliveryError(ResendError):
    """Alerts stay undelivered after this run (a channel down, refusing, or timing out)."""


class _RetryableDeliveryError(Exception):
    """A channel's answer worth another attempt: 5xx, 429, a reset, a timeout, refused."""

    def __init__(self, reason: str, retry_after: Optional[float] = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class _RefusedDeliveryError(Exception):
    """A channel's answer no retry will change (4xx other than 429)."""


class _UnansweredDeliveryError(Exception):
    """Sent, and no answer: the channel may have taken it; the next run sends it again."""


@dataclass(frozen=True)
class DeliveryPolicy:
    """`[alerts]`: attempts per message, backoff and timeouts."""

    max_attempts: int = 4
    initial_backoff_seconds: float = 1.0
    max_backoff_seconds: float = 30.0
    connect_timeout_seconds: float = 5.0
    read_timeout_seconds: float = 10.0

    @classmethod
    def from_config(cls) -> "DeliveryPolicy":
        policy = cls(**config_values(cls()))
        if policy.max_attempts < 1 or min(vars(policy).values()) < 0:
            raise ResendConfigError(
                "alerts: max_attempts must be at least 1 and the times 0 or more"
            )
        if not policy.connect_timeout_seconds > 0 < policy.read_timeout_seconds:
            raise ResendConfigError("alerts: the timeouts must be above 0")
        return policy


@dataclass(frozen=True)
class Channel:
    """Where alerts go: `name` for people, `column` marks what it has, `url` stays secret."""

    name: str
    column: str
    url: str = field(repr=False)
    # the body of one message: its alerts, and how many more further messages carry
    render: Callable[[List[Dict[str, Any]], int], bytes] = field(repr=False)


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


def configured_channels(pipeline: dlt.Pipeline) -> List[Channel]:
    """Slack (dlt's `runtime.slack_incoming_hook`) and the webhook (`alerts.webhook_url`),
    those configured; a URL that is not https (http only to loopback) fails in one line."""
    channels = []
    slack = str(pipeline.runtime_config.slack_incoming_hook or "").strip()  # dlt resolved it
    if slack:
        _check_url(slack, "RUNTIME__SLACK_INCOMING_HOOK (runtime.slack_incoming_hook)")
        channels.append(Channel("Slack", "slack_delivered_at", slack, slack_message))
    webhook = str(dlt.secrets.get(WEBHOOK_URL_KEY) or "").strip()  # variables, secrets.toml
    if webhook:
        _check_url(webhook, "ALERTS__WEBHOOK_URL (webhook_url under [alerts])")
        channels.append(Channel("webhook", "webhook_delivered_at", webhook, webhook_payload))
    DeliveryPolicy.from_config()  # a bad setting fails before the run, not after its load
    return channels


def _check_url(url: str, setting: str) -> None:
    """https, or http to loopback; parsed by the parser that sends (urllib3's), and with no
    credentials or backslash in it that parsers read differently."""
    try:
        parts = parse_url(url)
    except LocationParseError:
        parts = None
    if parts is not None and parts.host and not parts.auth and "\\" not in url:
        if parts.scheme == "https" or (parts.scheme == "http" and _is_loopback(parts.host)):
            return
    raise ResendConfigError(
        f"{setting} must be an https:// URL (http:// only to loopback); the value is not shown"
    )


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(
            connect=policy.connect_timeout_seconds, read=policy.read_timeout_seconds
        ),
        retries=False,
    )
    with pipeline.sql_client() as client, _urllib3_quiet():
        table = client.make_qualified_table_name(ALERTS_TABLE)
        try:
            _count(client, table)
        except DatabaseUndefinedRelation:
            return report  # no alert was ever raised into this dataset
        with open_ledger(ledger_path(pipeline)) as ledger:
            for channel in channels:
                _deliver_to(channel, client, table, ledger, http, policy, report)
        done = " AND ".join(f"{channel.column} IS NOT NULL" for channel in channels)
        client.execute_sql(
            f"UPDATE {table} SET delivered_at = %s WHERE delivered_at IS NULL AND {done}",
            datetime.now(UTC),
        )
        report.waiting = _count(client, table)
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
    alerts = _undelivered(client, table, channel.column)
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
            _post(http, channel, channel.render(message, left), policy, idempotency_key)
        except (
            _RetryableDeliveryError,
            _RefusedDeliveryError,
            _UnansweredDeliveryError,
        ) as exc:
            report.problems.append(
                f"{channel.name}: {exc}; {left + len(message)} alerts wait for the next run"
            )
            return
        accepted_at = datetime.now(UTC)
        try:
            ledger.accept(channel.name, keys, accepted_at)
        finally:  # the destination's mark, also when the ledger could not take the record
            _mark(client, table, channel.column, keys, accepted_at)
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
        _mark(client, table, column, keys, accepted_at)
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


def new_alerts(pipeline: dlt.Pipeline, load_ids: Sequence[str], raised: int) -> int:
    """How many alerts the loads added (a raised alert the table held already adds none);
    `raised` when the destination cannot say."""
    marks = ", ".join(["%s"] * len(load_ids))
    try:
        with pipeline.sql_client() as client:
            table = client.make_qualified_table_name(ALERTS_TABLE)
            rows = client.execute_sql(
                f"SELECT count(*) FROM {table} WHERE _dlt_load_id IN ({marks})", *load_ids
            )
    except (DestinationException, SqlClientNotAvailable):
        return raised
    return int(rows[0][0]) if rows else raised


def _count(client: Any, table: str) -> int:
    rows = client.execute_sql(f"SELECT count(*) FROM {table} WHERE delivered_at IS NULL")
    return int(rows[0][0])


def _undelivered(client: Any, table: str, column: str) -> List[Dict[str, Any]]:
    names = ", ".join(PAYLOAD_COLUMNS)
    rows = client.execute_sql(
        f"SELECT {names} FROM {table} WHERE delivered_at IS NULL AND {column} IS NULL"
        " ORDER BY raised_at, alert_key"
    )
    return [dict(zip(PAYLOAD_COLUMNS, row, strict=True)) for row in rows or []]


def _mark(client: Any, table: str, column: str, keys: List[str], accepted_at: datetime) -> None:
    marks = ", ".join(["%s"] * len(keys))
    client.execute_sql(
        f"UPDATE {table} SET {column} = %s WHERE alert_key IN ({marks})", accepted_at, *keys
    )


def _post(
    http: urllib3.PoolManager,
    channel: Channel,
    body: bytes,
    policy: DeliveryPolicy,
    idempotency_key: str,
) -> None:
    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _RetryableDeliveryError) and exc.retry_after is not None:
            return min(exc.retry_after, policy.max_backoff_seconds)
        backoff = policy.initial_backoff_seconds * 2 ** (state.attempt_number - 1)
        return float(min(backoff, policy.max_backoff_seconds))

    retrying = Retrying(
        stop=stop_after_attempt(policy.max_attempts),
        wait=wait,
        retry=retry_if_exception_type(_RetryableDeliveryError),
        reraise=True,
    )
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "resend-imports",
        "Idempotency-Key": idempotency_key,
    }
    for attempt in retrying:
        with attempt:
            _post_once(http, channel, body, headers)


def _post_once(
    http: urllib3.PoolManager, channel: Channel, body: bytes, headers: Dict[str, str]
) -> None:
    """One POST; classified by exception type and status, never by the URL-bearing message.

    Failures before anything was sent are retried; a sent message without an answer is not.
    """
    try:
        response = http.request("POST", channel.url, body=body, headers=headers)
    except urllib3.exceptions.NameResolutionError:  # (subclasses of ConnectTimeoutError)
        raise _RetryableDeliveryError("unknown host") from None
    except urllib3.exceptions.NewConnectionError:
        raise _RetryableDeliveryError("connection refused or host unreachable") from None
    except urllib3.exceptions.ConnectTimeoutError:
        raise _RetryableDeliveryError("no answer to connect (timeout)") from None
    except urllib3.exceptions.ReadTimeoutError:
        raise _UnansweredDeliveryError("sent, but no answer in time (read timeout)") from None
    except urllib3.exceptions.ProtocolError:
        raise _UnansweredDeliveryError("sent, but the connection was reset") from None
    except urllib3.exceptions.HTTPError as exc:
        raise _UnansweredDeliveryError(f"transport error ({type(exc).__name__})") from None
    if response.status == 429 or response.status >= 500:
        retry_after = response.headers.get("retry-after")
        seconds = float(retry_after) if retry_after and retry_after.isdigit() else None
        raise _RetryableDeliveryError(f"answered {response.status}", seconds)
    if response.status >= 300:
        raise _RefusedDeliveryError(f"answered {response.status} (not retried: check the URL)")


def slack_message(alerts: List[Dict[str, Any]], later: int) -> bytes:
    """One Slack message: up to 20 alerts, each with its import, rule, status, counts and key."""
    lines = [f"*resend-imports: {len(alerts) + max(later, 0)} contact import alerts*"]
    for alert in alerts:
        counts = ", ".join(
            f"{name} {alert[f'counts__{name}']}"
            for name in COUNT_FIELDS
            if alert[f"counts__{name}"] is not None
        )
        rate = "" if alert["failure_rate"] is None else f", {alert['failure_rate']:.1%} failed"
        lines.append(
            f"• `{alert['import_id']}` {alert['rule'].replace('_', ' ')}: {alert['status']}"
            f" ({counts or 'no counts yet'}{rate}) key `{alert['alert_key']}`"
        )
    if later > 0:
        lines.append(f"…and {later} more, in the next messages")
    return json.dumps({"text": "\n".join(lines)}).encode()


def webhook_payload(alerts: List[Dict[str, Any]], later: int) -> bytes:
    """`{"alerts": [...]}`: one object per alert with every column of the outbox."""
    objects = [{name: _json_value(alert[name]) for name in PAYLOAD_COLUMNS} for alert in alerts]
    return json.dumps({"source": "resend-imports", "alerts": objects}).encode()


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value
