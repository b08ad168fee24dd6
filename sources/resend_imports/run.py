"""One account's run of the `contact_imports` resource, as one object (`Run`).

The resource in `__init__` is a few lines over `fanout.sync_contact_imports`, which checks
the destination once and runs one `Run` per account. A run checks its account's part of
the table before it lists anything (`checks`), lists (down to the frontier, or everything)
into its intake (`intake`), fetches by id what the listing did not show (`by_id`), marks
deleted what is gone, raises the alerts on open imports, saves the next state, and hands dlt
what it did (`SyncReport`).
"""

import logging
import secrets
from datetime import UTC, datetime
from typing import Any, Dict, Iterator, List, Optional, Set

from . import by_id
from .alerts import Alerting
from .checks import (
    ANOTHER_KEY,
    INCREMENTAL,
    REPAIR,
    Checked,
    for_account,
    mode_of,
    repair_reason,
    say_why,
)
from .client import ResendClient
from .config import alert_rules
from .destination import DestinationReader
from .errors import MissingAPIKeyError
from .formats import hand_over
from .incremental import SyncState
from .intake import Intake
from .known import NothingKnown, StateKnowledge, TableLookups
from .observer import RunObserver
from .options import RunOptions
from .recorder import Recorder
from .records import COLUMNS
from .settings import TABLE_NAME
from .sync_report import SyncReport
from .table_copy import TableCopy

logger = logging.getLogger("resend_imports")


class Run:
    """One account's run: what it found before listing, what kind of run that makes it, and
    the parts that take its imports in (`knowledge`, `observer`, `recorder`, `intake`).

    Cost model: a first or complete listing makes ceil(N / page_size) list requests; an
    incremental one pages down to the frontier (the oldest open import near the top, else the
    newest import), so a quiet run makes 1; plus one GET per import watched by id (stuck deep
    in history, missing from the listing, or marked deleted in the last
    `RECHECK_DELETED_DAYS`) and, after a complete listing, one per id the table holds that the
    listing did not return. On the destination: a count before the listing, one query per
    batch of the listing (incremental), or one streamed copy of the account's rows (complete
    listing).
    """

    def __init__(
        self,
        client: ResendClient,
        options: RunOptions,
        reader: Optional[DestinationReader],
        stored: Dict[str, Any],
        checked: Checked,
        account: str,
    ) -> None:
        if not client.has_api_key:
            raise MissingAPIKeyError(
                "no Resend API key: set RESEND_API_KEY, SOURCES__RESEND_IMPORTS__API_KEY"
                " or api_key under [sources.resend_imports] in .dlt/secrets.toml"
            )
        self.client = client
        self.options = options
        self.reader = reader  # reading `account`'s rows (`DestinationReader.account`)
        self.stored = stored  # the account's state, saved into at the end
        self.report = SyncReport(status=options.status, account=account)
        self.rules = alert_rules(dict(options.alert_settings))
        self.checked = checked if reader is None else for_account(checked, reader)
        self.previous = SyncState.load(stored)
        self.started_at = datetime.now(UTC)
        self.salt = self.previous.key_salt or secrets.token_hex(8)
        self.key_fingerprint = client.key_fingerprint(self.salt)
        key_changed = self.previous.key_fingerprint not in (None, self.key_fingerprint)
        dataset = reader.dataset if reader is not None else ""
        repair = repair_reason(self.previous, self.checked, dataset)
        self.report.mode = mode_of(self.previous, options, self.started_at, key_changed, repair)
        say_why(self.report.mode, repair, dataset)
        self.frontier = self.previous.frontier() if self.report.mode == INCREMENTAL else None
        self.complete = self.frontier is None and options.status is None
        self.observer = RunObserver(options.page_size)
        # the first run, the first with alerts on, another key's, or a repair (the table lost
        # what it held, not Resend): nothing older than `since_hours` is alerted
        first_alerts = (
            self.previous.is_empty
            or self.previous.alerts_since is None
            or self.report.mode in (ANOTHER_KEY, REPAIR)
        )
        alerting = Alerting(self.rules, self.started_at, first_alerts)
        self.recorder = Recorder(
            alerting,
            self.report,
            reader,
            self.checked.history_exists,
            self.checked.alerts_exist,
            self.checked.to_write,
        )
        self.alerted: Set[str] = set(self.previous.open_alerted)  # imports alerted as open too long
        # why the next run must list every import to confirm what this one concluded
        self.empty_listing: Optional[str] = None
        # built last (a scratch copy of the table, which the caller closes: `fanout`)
        self.knowledge = self._knowledge()
        self.intake = Intake(
            self.knowledge,
            self.observer,
            self.recorder,
            self.report,
            watched=[*self.previous.open_imports, *self.previous.deleted],
            watch_malformed=self.frontier is not None,
        )

    def _knowledge(self) -> NothingKnown:
        """Where this run reads what the table holds (see `known`)."""
        health = self.checked.health
        if self.reader is None or health is None:
            return StateKnowledge(self.previous)  # outside a pipeline, or no SQL to read with
        if health.live is None:
            return NothingKnown()  # no table yet, or created again
        if self.complete:
            return TableCopy(self.reader, health.columns)
        return TableLookups(self.reader, health.columns)

    def items(self) -> Iterator[Any]:
        """Everything the run hands to dlt; the state and the report once it is consumed."""
        yield from self._listing()
        if self.options.status is not None:
            yield from self.intake.emit(flush=True)
            # the state is left alone but for the count of live imports, moved on by what
            # this run added: rows a person deleted before it stay missing from the table,
            # not from the count, so that the next unfiltered run notices and repairs them
            live = self._live_imports(since=self.previous.live_imports)
            if not self.previous.is_empty and live is not None:
                self.stored["live_imports"] = live
        else:
            yield from self._unlisted()
            self._save_state()
        self.report.count_requests(self.client.stats)

    def _listing(self) -> Iterator[Any]:
        health = self.checked.health
        expected = health.live if self.complete and health is not None else None
        status = self.options.status
        for page in self.client.iter_pages(self.options.page_size, status, expected):
            self.intake.take_page(page, datetime.now(UTC))
            yield from self.intake.emit()
            oldest = self.intake.oldest_listed
            if self.frontier is not None and oldest and oldest < self.frontier:
                break  # an incremental run is down to the frontier
        self.intake.finish()  # the last pages, before the fetches by id look at what was read

    def _unlisted(self) -> Iterator[Any]:
        """What the listing did not show: fetched by id, or concluded gone and marked
        deleted; then the alerts on open imports."""
        # another key whose listing shares no import with the table: another account (a
        # rotated key of the same account lists what the table holds)
        another_account = self.report.mode == ANOTHER_KEY and not self.intake.shares_imports()
        if self.report.mode == ANOTHER_KEY and not another_account:
            logger.info("the listing shares imports with the table: the same account")
        if another_account and self.report.rows == self.report.quarantined == 0:
            self._confirm_empty_listing()
        gone_after = self.options.gone_after_runs
        wanted = by_id.wanted(self.previous, self.complete, gone_after, self.knowledge)
        gone = by_id.fetch(
            self.client,
            wanted,
            self.intake,
            self.observer,
            self.report,
            gone_after,
            another_account,
        )
        if self.complete and self.reader is not None and not self.reader.readable:
            logger.warning(
                "%s cannot be read with SQL on this destination: deletions are not"
                " reconciled by complete listings",
                TABLE_NAME,
            )
        yield from self.intake.emit(flush=True)
        yield from self._mark_deleted(gone, recheck=not another_account)
        self.alerted = self.recorder.open_imports(self.observer.open_rows(), self.alerted)
        yield from self.recorder.items()

    def _confirm_empty_listing(self) -> None:
        """A listing of nothing under another key is an empty account's, or the same
        account's answered short: the table's imports are marked deleted as another
        account's, and the next run lists every import to confirm it (an API that answered
        short then gives them back; an empty account costs one empty listing)."""
        health = self.checked.health
        if health is not None and not health.live:
            return  # the table held nothing live either: nothing to confirm
        held = f"{health.live:,} " if health is not None else ""
        self.empty_listing = (
            f"the listing under another API key returned no import where the table held"
            f" {held}live ones"
        )
        logger.warning(
            "%s: taken as another, empty, Resend account's (they are marked deleted); the next"
            " run lists every import again to confirm it",
            self.empty_listing,
        )

    def _mark_deleted(self, gone: List[str], recheck: bool) -> Iterator[Any]:
        """The last rows of imports concluded gone, with `deleted_at` set, and their history;
        re-checked by id on later runs unless they were another account's."""
        reader = self.reader
        if not gone or reader is None or not reader.readable:
            if gone:
                logger.warning(
                    "%d gone imports could not be marked deleted: the destination cannot be read",
                    len(gone),
                )
            return
        deleted_at = datetime.now(UTC)
        logged = 0
        for rows in reader.last_rows(gone):
            for row in rows:
                row["deleted_at"] = deleted_at
                self.observer.deleted(row["id"], deleted_at, row.get("status"), recheck)
                if logged < 10:
                    logger.warning("import %s is gone from Resend: marked deleted", row["id"])
                logged += 1
            self.report.deleted += len(rows)
            yield from hand_over(rows, COLUMNS)
            self.recorder.deleted(rows, deleted_at)
            yield from self.recorder.items()
        if logged > 10:
            logger.warning("%d more imports gone from Resend: marked deleted", logged - 10)

    def _save_state(self) -> None:
        alerts_since = None
        if self.rules.enabled:
            alerts_since = self.previous.alerts_since or self.started_at.isoformat()
        state = self.observer.next_state(
            self.previous,
            self.started_at,
            self.complete,
            self.alerted,
            alerts_since,
            live_imports=self._live_imports(),
            key=(self.salt, self.key_fingerprint),
        )
        state.repair_owed = self.empty_listing
        state.save(self.stored)
        self.report.open_imports = len(state.open_imports)

    def _live_imports(self, since: Optional[int] = None) -> Optional[int]:
        """The live imports the table holds once this run's load is in: those it held when
        the run started (counted then: rows a filtered run added are in), or `since` (the
        count the last run left), plus what this run added and brought back, minus what it
        marked deleted."""
        health = self.checked.health
        if not self.checked.readable or health is None:
            return None  # nothing to count with: no check on the next run either
        held = (health.live or 0) if since is None else since
        return held + self.report.new + len(self.observer.returned) - self.report.deleted
