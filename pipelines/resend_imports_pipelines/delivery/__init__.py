"""Alert delivery: the outbox's marks, the channels (Slack, a webhook), sending with the
source's HTTP vocabulary, and the delivery ledger that sends each alert once."""

from .channels import CHANNELS, Channel, ChannelKind, configured_channels
from .deliver import AlertDeliveryError, DeliveryReport, deliver_pending
from .outbox import declare_marks
from .send import DeliveryPolicy

__all__ = [
    "CHANNELS",
    "AlertDeliveryError",
    "Channel",
    "ChannelKind",
    "DeliveryPolicy",
    "DeliveryReport",
    "configured_channels",
    "declare_marks",
    "deliver_pending",
]
