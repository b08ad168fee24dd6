"""The channels alerts go to: where each is configured, the mark it leaves on the outbox's
rows, and the body of one of its messages.

A new channel is one more `ChannelKind` in `CHANNELS`: its name (for people and the delivery
ledger), its mark column (declared with the others, see `outbox`), where its URL is
configured and how a message is rendered. The URLs are secrets: checked by the source's URL
policy (`sources/resend_imports/http.py`), never shown.
"""

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Callable, Dict, List

import dlt

from resend_imports.accounts import ACCOUNT_COLUMN, DEFAULT_ACCOUNT
from resend_imports.alerts import ALERT_COLUMNS
from resend_imports.config import ALERTS_SECTIONS, secret
from resend_imports.http import checked_url
from resend_imports.settings import COUNT_FIELDS

from .send import DeliveryPolicy

ALERTS_PER_MESSAGE = 20
SLACK_HOOK_SETTING = "RUNTIME__SLACK_INCOMING_HOOK (runtime.slack_incoming_hook)"
DELIVERED_AT = "delivered_at"  # set once every configured channel has the alert

# the body of one message: its alerts, and how many more further messages carry
Render = Callable[[List[Dict[str, Any]], int], bytes]


@dataclass(frozen=True)
class ChannelKind:
    """A channel alerts can be delivered to, configured or not."""

    name: str
    column: str  # the mark of what it has, on the outbox's rows
    setting: str  # where its URL is configured, for people
    url_of: Callable[[dlt.Pipeline], str]
    render: Render


@dataclass(frozen=True)
class Channel:
    """A configured channel: `name` for people, `column` marks what it has, `url` stays secret."""

    name: str
    column: str
    url: str = field(repr=False)
    render: Render = field(repr=False)


def slack_message(alerts: List[Dict[str, Any]], later: int) -> bytes:
    """One Slack message: up to 20 alerts, each with its import (and its account, unless the
    only one, `default`), rule, status, counts and key."""
    lines = [f"*resend-imports: {len(alerts) + max(later, 0)} contact import alerts*"]
    for alert in alerts:
        counts = ", ".join(
            f"{name} {alert[f'counts__{name}']}"
            for name in COUNT_FIELDS
            if alert[f"counts__{name}"] is not None
        )
        rate = "" if alert["failure_rate"] is None else f", {alert['failure_rate']:.1%} failed"
        account = alert[ACCOUNT_COLUMN]
        lines.append(
            f"• {'' if account == DEFAULT_ACCOUNT else f'{account}: '}"
            f"`{alert['import_id']}` {alert['rule'].replace('_', ' ')}: {alert['status']}"
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


def _slack_url(pipeline: dlt.Pipeline) -> str:
    return str(pipeline.runtime_config.slack_incoming_hook or "")  # dlt resolved it


def _webhook_url(pipeline: dlt.Pipeline) -> str:
    return str(secret(ALERTS_SECTIONS, "webhook_url") or "")  # variables, secrets.toml


CHANNELS = (
    ChannelKind(
        "Slack",
        "slack_delivered_at",
        SLACK_HOOK_SETTING,
        _slack_url,
        slack_message,
    ),
    ChannelKind(
        "webhook",
        "webhook_delivered_at",
        "SOURCES__RESEND_IMPORTS__ALERTS__WEBHOOK_URL (webhook_url under"
        " [sources.resend_imports.alerts])",
        _webhook_url,
        webhook_payload,
    ),
)
_TIMESTAMP = {"data_type": "timestamp", "timezone": True}
# the delivery marks of the outbox: declared by delivery (see `outbox.declare_marks`)
MARKS: Any = {name: dict(_TIMESTAMP) for name in (DELIVERED_AT, *(k.column for k in CHANNELS))}
# the columns of a payload: every column of the outbox but the per-channel marks (with the
# account: several accounts may alert on the same import id)
PAYLOAD_COLUMNS = [
    name
    for name in {**ALERT_COLUMNS, ACCOUNT_COLUMN: None, **MARKS}
    if name not in {kind.column for kind in CHANNELS}
]


def configured_channels(pipeline: dlt.Pipeline) -> List[Channel]:
    """The channels configured, each URL checked (https, http only to loopback), and the
    delivery settings: a bad one fails in one line before the run, not after its load."""
    channels = []
    for kind in CHANNELS:
        url = kind.url_of(pipeline).strip()
        if url:
            checked_url(url, kind.setting, "the hook URL", shown=False)
            channels.append(Channel(kind.name, kind.column, url, kind.render))
    DeliveryPolicy.from_config()
    return channels
