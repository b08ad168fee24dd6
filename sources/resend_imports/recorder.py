"""What a run records besides the imports: the history of what it observed, the alerts that
raises, and the records it set aside; the one place these are yielded, and alerts counted.

The intake tells the recorder what it observed (new, changed, back after a deletion) and what
it could not load; the run tells it what it marked deleted and which open imports it read.
The recorder turns that into rows of `contact_import_status_history`, `contact_import_alerts`
and `contact_imports_quarantine`, and hands them to dlt (`items`) when the run hands over a
batch of imports, so that they land in the same load package. A destination without the
alerts table gets it with the first batch, empty when the run raises nothing: the outbox is
there from the first run, for queries and readers that should not wait for a first alert.

An alert is news only once: not for an observation the history recorded before (the table was
emptied or edited by a person, the state lost), and not under a key the alerts table holds
already (it is insert-only: such a row would not be written again). `alerts_raised` counts
the news, the alerts the table did not hold.
"""

import logging
from datetime import datetime
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Set, Tuple

from .alerts import ALERT_COLUMNS, ALERTS_TABLE, Alerting
from .destination import DestinationReader
from .errors import MalformedImportError
from .formats import empty_table, hand_over
from .history import HISTORY_COLUMNS, deletion_rows, history_row, observation_key
from .known import Comparison
from .quarantine import QUARANTINE_COLUMNS, QUARANTINE_TABLE, quarantine_row
from .records import Row
from .settings import HISTORY_TABLE
from .sync_report import SyncReport

logger = logging.getLogger("resend_imports")

LOGGED_MALFORMED = 10  # records set aside named one by one in a run; the summary counts all

Alert = Tuple[Optional[str], Dict[str, Any]]  # the observation that raised it, if one did


class Recorder:
    """History, alerts and records set aside of one run, until they are handed to dlt."""

    def __init__(
        self,
        alerting: Alerting,
        report: SyncReport,
        reader: Optional[DestinationReader] = None,
        history_exists: bool = False,
        alerts_exist: bool = False,
        to_write: Sequence[str] = (),
    ) -> None:
        self.alerting = alerting
        self.report = report
        # where earlier runs' records can be asked for (None: a destination without SQL)
        self._history = reader if history_exists else None
        self._alerts_table = reader if alerts_exist else None
        # an outbox the destination lacks is created by this run, empty if it raises nothing,
        # so that queries and readers of it work from the first run on; as is any table of
        # `to_write` (a lakehouse's, deleted by a person)
        outbox = reader is not None and reader.readable and not alerts_exist
        self._create: Set[str] = {*to_write, *([ALERTS_TABLE] if outbox else [])}
        self._observed: List[Dict[str, Any]] = []
        self._raised: List[Alert] = []
        self._quarantined: List[Dict[str, Any]] = []
        self._quarantine_keys: Set[str] = set()  # set aside by this run

    def observed(
        self,
        rows: Sequence[Row],
        fingerprints: Sequence[str],
        comparison: Comparison,
        seen_at: Sequence[datetime],
    ) -> None:
        """Rows compared with the table (`comparison`, row for row): a history row and the
        alert rules for each one observed in a new state."""
        seen: List[Row] = []
        keys: List[str] = []
        before: List[Optional[str]] = []
        for index, observed in enumerate(comparison.observed):
            if not observed:
                continue
            row = rows[index]
            key = observation_key(row["id"], fingerprints[index], comparison.key_suffix[index])
            previous_status = comparison.previous_status[index]
            self._observed.append(history_row(row, key, seen_at[index], previous_status))
            seen.append(row)
            keys.append(key)
            before.append(comparison.before[index])
        self._raised += self.alerting.on_observed(seen, keys, before)

    def deleted(self, rows: Sequence[Row], deleted_at: datetime) -> None:
        """The last rows of imports this run marked deleted: their history."""
        self._observed += deletion_rows(rows, deleted_at)

    def set_aside(
        self, raw: Any, error: MalformedImportError, seen_at: datetime, requested_id: Optional[str]
    ) -> Dict[str, Any]:
        """A record that cannot be loaded as typed: kept as received (once a run), named in
        the log (the first few), alerted. Returns its quarantine row."""
        row = quarantine_row(raw, error, seen_at, requested_id)
        if row["quarantine_key"] not in self._quarantine_keys:
            self._quarantine_keys.add(row["quarantine_key"])
            self.report.quarantined += 1
            if self.report.quarantined <= LOGGED_MALFORMED:
                logger.warning(
                    "set aside a malformed record (%s): %s", error.reason, row["quarantine_key"]
                )
            self._quarantined.append(row)
            self._raised += [(None, alert) for alert in self.alerting.on_malformed([row])]
        return row

    def open_imports(self, open_rows: Iterable[Row], alerted: Set[str]) -> Set[str]:
        """The latest rows of the open imports this run read: alerts on those open too long
        that `alerted` (by an earlier run) does not name. Returns the ids alerted so far."""
        raised, alerted = self.alerting.on_open(open_rows, alerted)
        self._raised += [(None, alert) for alert in raised]
        return alerted

    def items(self) -> Iterator[Any]:
        """What was recorded since the last call, as dlt items."""
        news = self._news(self._raised)
        self.report.alerts_raised += len(news)
        recorded = (
            (QUARANTINE_TABLE, QUARANTINE_COLUMNS, self._quarantined),
            (HISTORY_TABLE, HISTORY_COLUMNS, self._observed),
            (ALERTS_TABLE, ALERT_COLUMNS, news),
        )
        for table, columns, rows in recorded:
            yield from hand_over(rows, columns, table)
            if table in self._create and not rows:
                yield empty_table(columns, table)
        self._create = set()
        self._quarantined, self._observed, self._raised = [], [], []

    def _news(self, raised: List[Alert]) -> List[Dict[str, Any]]:
        if not raised:
            return []
        if self._history is not None:
            observations = [key for key, _ in raised if key is not None]
            recorded = self._history.held_keys(
                "the history", HISTORY_TABLE, "observation_key", observations
            )
            raised = [(key, alert) for key, alert in raised if key not in recorded]
        alerts = [alert for _, alert in raised]
        if self._alerts_table is not None and alerts:
            keys = [alert["alert_key"] for alert in alerts]
            held = self._alerts_table.held_keys("the alerts", ALERTS_TABLE, "alert_key", keys)
            alerts = [alert for alert in alerts if alert["alert_key"] not in held]
        return alerts
