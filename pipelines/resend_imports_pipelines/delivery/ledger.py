"""The delivery ledger: which alerts each channel was sent and accepted, kept on this machine.

The marks in the destination (`*_delivered_at`) are not enough to send each alert once: a
restored backup takes them back, and a new dataset or destination starts without them while
its first run raises again the alerts of the last `since_hours`, under the same `alert_key`s.
So delivery also records every message in a small SQLite file beside the writer lock,
`<pipelines_dir>/<pipeline_name>.alerts-delivered.sqlite`: out of the destination, and out of
dlt's working folder of the pipeline, which dlt may wipe. The writer lock (held by every
delivery) makes it single-writer. It holds channel names ("Slack", "webhook"), never their
URLs. An entry is kept `RETENTION` after its acceptance (or its sending, when no answer came).
"""

import sqlite3
from contextlib import closing, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Dict, Iterator, List

import dlt

from resend_imports.errors import ResendError

RETENTION = timedelta(days=90)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    channel TEXT NOT NULL,
    alert_key TEXT NOT NULL,
    message TEXT NOT NULL,
    sent_at TEXT NOT NULL,
    accepted_at TEXT,
    PRIMARY KEY (channel, alert_key)
)
"""


class DeliveryLedgerError(ResendError):
    """The ledger cannot be read or written: nothing more is sent until it can."""


def ledger_path(pipeline: dlt.Pipeline) -> Path:
    return Path(pipeline.pipelines_dir) / f"{pipeline.pipeline_name}.alerts-delivered.sqlite"


class DeliveryLedger:
    """Per channel and alert: the message that carried it (its `Idempotency-Key`), when it was
    sent, and when the channel accepted it (None while that is not known)."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    def accepted(self, channel: str) -> Dict[str, datetime]:
        rows = self._connection.execute(
            "SELECT alert_key, accepted_at FROM deliveries"
            " WHERE channel = ? AND accepted_at IS NOT NULL",
            (channel,),
        )
        return {key: datetime.fromisoformat(accepted) for key, accepted in rows}

    def unanswered(self, channel: str) -> List[List[str]]:
        """The messages sent whose acceptance is not known, oldest first, each as its alert
        keys in the order sent: the next delivery sends them again as they were."""
        messages: Dict[str, List[str]] = {}
        rows = self._connection.execute(
            "SELECT message, alert_key FROM deliveries"
            " WHERE channel = ? AND accepted_at IS NULL ORDER BY rowid",
            (channel,),
        )
        for message, key in rows:
            messages.setdefault(message, []).append(key)
        return list(messages.values())

    def sending(self, channel: str, message: str, keys: List[str], now: datetime) -> None:
        """Before the POST: whatever happens next, the next delivery knows how it was grouped."""
        with self._connection:
            self._connection.executemany(
                "INSERT OR REPLACE INTO deliveries (channel, alert_key, message, sent_at)"
                " VALUES (?, ?, ?, ?)",
                [(channel, key, message, _text(now)) for key in keys],
            )

    def accept(self, channel: str, keys: List[str], now: datetime) -> None:
        with self._connection:
            self._connection.executemany(
                "UPDATE deliveries SET accepted_at = ? WHERE channel = ? AND alert_key = ?",
                [(_text(now), channel, key) for key in keys],
            )

    def prune(self, now: datetime) -> None:
        with self._connection:
            self._connection.execute(
                "DELETE FROM deliveries WHERE coalesce(accepted_at, sent_at) < ?",
                (_text(now - RETENTION),),
            )


@contextmanager
def open_ledger(path: Path) -> Iterator[DeliveryLedger]:
    """The ledger at `path` (created when missing), pruned; any SQLite failure, then or while
    it is used, is a `DeliveryLedgerError` naming the file."""
    try:
        with closing(sqlite3.connect(path)) as connection:
            connection.execute(_SCHEMA)
            ledger = DeliveryLedger(connection)
            ledger.prune(datetime.now(UTC))
            yield ledger
    except sqlite3.Error as exc:
        raise DeliveryLedgerError(
            f"the delivery ledger {path} cannot be used ({type(exc).__name__}: {exc}); the"
            " alerts wait in the destination. Fix or delete the file (deleted, the"
            " destination's marks stand alone: see README, Alerts)"
        ) from None


def _text(moment: datetime) -> str:
    """UTC with microseconds, always the same width: the text sorts as the time."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")
