"""Alert delivery exactly once per installation: the delivery ledger beside the writer lock
remembers what each channel accepted across a restored backup, a new dataset and a move from
DuckDB to PostgreSQL, which all take the destination's own marks away; and what is left when
the pipelines folder itself is wiped.

Every count on the receiver's side is taken from the bodies the local receiver accepted and
compared with the outbox rows read from the destination, never with the connector's report.
"""

import hashlib
import shutil
import sqlite3
from collections import Counter, defaultdict
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import duckdb
import pytest

from resend_imports_pipelines.delivery.ledger import RETENTION

from .alert_receiver import AlertReceiver
from .conftest import Account
from .scenarios import backup, finish
from .test_alerts import SECRET, channels_env, live_account, rules_env

LEDGER = "resend_imports.alerts-delivered.sqlite"


def outbox_keys(account: Account, dataset: str = "resend") -> List[str]:
    """The alert keys in the outbox; every one must be marked delivered by now."""
    rows = account.query(
        "SELECT alert_key, delivered_at FROM {dataset}.contact_import_alerts", dataset=dataset
    )
    assert all(delivered is not None for _, delivered in rows), rows
    return [key for key, _ in rows]


def duckdb_outbox_keys(path: Path) -> List[str]:
    with closing(duckdb.connect(str(path), read_only=True)) as connection:
        rows = connection.execute(
            "SELECT alert_key, delivered_at FROM resend.contact_import_alerts"
        ).fetchall()
    assert all(delivered is not None for _, delivered in rows), rows
    return [key for key, _ in rows]


def received(receiver: AlertReceiver) -> Dict[str, Counter[str]]:
    """How many times each alert key reached each channel."""
    return {
        "Slack": Counter(receiver.slack_keys()),
        "webhook": Counter(alert["alert_key"] for alert in receiver.webhook_alerts()),
    }


def assert_each_once(receiver: AlertReceiver, keys: List[str]) -> None:
    for channel, counts in received(receiver).items():
        assert counts == Counter(set(keys)), channel


def fail_some_open_imports(account: Account, how_many: int = 6) -> List[str]:
    """Open imports end `failed` (one alert each) before the next sync."""
    chosen = account.store.open_ids()[:how_many]
    for import_id in chosen:
        finish(account.store, import_id)
    assert len(chosen) == how_many
    return chosen


def ledger_rows(account: Account) -> List[tuple[Any, ...]]:
    path = account.workdir / "pipelines" / LEDGER
    with closing(sqlite3.connect(path)) as connection:
        return connection.execute(
            "SELECT channel, alert_key, message, sent_at, accepted_at FROM deliveries"
        ).fetchall()


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[AlertReceiver]:
    rules_env(monkeypatch)
    receiver = AlertReceiver()
    channels_env(monkeypatch, receiver)
    yield receiver
    receiver.down()


def test_a_restored_backup_sends_nothing_twice(
    make_account: Any, destination_name: str, receiver: AlertReceiver
) -> None:
    account = live_account(make_account)
    account.sync(account.pipeline())
    before = set(received(receiver)["webhook"])
    restore = backup(account)
    account.store.advance(new=25, seconds=1800)
    fail_some_open_imports(account)
    account.sync(account.pipeline())
    since_backup = set(received(receiver)["webhook"]) - before
    assert len(since_backup) >= 6  # the six failures at least, delivered after the backup
    restore()  # the outbox goes back to before them: not there, or not marked
    summary = account.sync(account.pipeline())
    keys = outbox_keys(account)
    assert since_backup <= set(keys)  # raised again into the restored outbox...
    assert_each_once(receiver, keys)  # ...and sent to neither channel again
    assert summary.delivery is not None
    assert summary.delivery.known == {"Slack": len(since_backup), "webhook": len(since_backup)}


def test_a_new_dataset_under_the_same_pipelines_folder_sends_nothing_twice(
    make_account: Any, destination_name: str, receiver: AlertReceiver
) -> None:
    account = live_account(make_account)
    account.sync(account.pipeline())
    first = outbox_keys(account)
    account.sync(account.pipeline(dataset="resend_copy"))  # its first run: since_hours again
    again = outbox_keys(account, dataset="resend_copy")
    assert again and set(again) <= set(first)
    account.store.advance(new=25, seconds=1800)
    fail_some_open_imports(account)
    account.sync(account.pipeline(dataset="resend_copy"))  # what is new still goes out
    keys = outbox_keys(account, dataset="resend_copy")
    assert len(set(keys) - set(first)) >= 6
    assert_each_once(receiver, first + keys)


def test_a_move_from_duckdb_to_postgresql_sends_nothing_twice(
    make_account: Any, receiver: AlertReceiver
) -> None:
    account = live_account(make_account, destination="postgres")
    account.sync(account.pipeline(duckdb_path=account.duckdb_path))  # on DuckDB first
    on_duckdb = duckdb_outbox_keys(account.duckdb_path)
    assert on_duckdb
    account.store.advance(new=25, seconds=1800)
    fail_some_open_imports(account)
    account.sync(account.pipeline())  # the same pipeline and folder, now on PostgreSQL
    on_postgres = outbox_keys(account)
    assert set(on_duckdb) & set(on_postgres)  # the first run there raised them again
    assert len(set(on_postgres) - set(on_duckdb)) >= 6
    assert_each_once(receiver, on_duckdb + on_postgres)


def test_a_wiped_pipelines_folder_leaves_the_destination_marks_as_the_only_record(
    make_account: Any, receiver: AlertReceiver
) -> None:
    """As the README says: the marks still hold on the same destination; a new dataset (or a
    restore, or a move) after the wipe sends again, with the same `alert_key`s."""
    account = live_account(make_account)
    account.sync(account.pipeline())
    first = outbox_keys(account)
    shutil.rmtree(account.workdir / "pipelines")
    account.store.advance(new=25, seconds=1800)
    fail_some_open_imports(account)
    account.sync(account.pipeline())
    keys = outbox_keys(account)
    assert len(keys) >= len(first) + 6
    assert_each_once(receiver, keys)  # the marks in the destination: nothing twice
    shutil.rmtree(account.workdir / "pipelines")
    account.sync(account.pipeline(dataset="resend_copy"))
    again = outbox_keys(account, dataset="resend_copy")
    assert again and set(again) <= set(keys)
    for channel, counts in received(receiver).items():  # sent twice, each under its key
        assert counts == Counter(keys) + Counter(again), channel


def test_the_ledger_sits_beside_the_lock_and_holds_no_hook_url(
    make_account: Any, receiver: AlertReceiver
) -> None:
    account = live_account(make_account)
    account.sync(account.pipeline())
    folder = account.workdir / "pipelines"
    assert (folder / "resend_imports.lock").exists() and (folder / LEDGER).exists()
    assert not list((folder / "resend_imports").rglob("*.sqlite"))  # not in dlt's folder
    keys = outbox_keys(account)
    rows = ledger_rows(account)
    assert Counter(channel for channel, *_ in rows) == {"Slack": len(keys), "webhook": len(keys)}
    content = (folder / LEDGER).read_bytes()
    for secret in (receiver.url(f"/slack/{SECRET}"), receiver.url("/webhook"), SECRET):
        assert secret.encode() not in content
    assert b"127.0.0.1" not in content and b"http" not in content


def test_the_ledger_forgets_after_its_retention_and_only_then_sends_again(
    make_account: Any, receiver: AlertReceiver
) -> None:
    account = live_account(make_account)
    account.sync(account.pipeline())
    restore = backup(account)
    account.store.advance(new=25, seconds=1800)
    fail_some_open_imports(account)
    before = set(received(receiver)["webhook"])
    account.sync(account.pipeline())
    since_backup = sorted(set(received(receiver)["webhook"]) - before)
    aged = since_backup[::2]  # half of them accepted longer ago than the retention
    old = (datetime.now(UTC) - RETENTION - timedelta(days=1)).isoformat(timespec="microseconds")
    path = account.workdir / "pipelines" / LEDGER
    with closing(sqlite3.connect(path)) as connection, connection:
        marks = ", ".join("?" * len(aged))
        connection.execute(
            f"UPDATE deliveries SET sent_at = ?, accepted_at = ? WHERE alert_key IN ({marks})",
            (old, old, *aged),
        )
    restore()
    account.sync(account.pipeline())
    keys = outbox_keys(account)
    for channel, counts in received(receiver).items():
        assert counts == Counter(keys) + Counter(aged), channel  # the aged ones, and only they
    cutoff = (datetime.now(UTC) - RETENTION).isoformat(timespec="microseconds")
    rows = ledger_rows(account)
    assert all(accepted > cutoff for *_, accepted in rows)  # pruned, then recorded anew
    assert {key for _, key, *_ in rows} >= set(aged)


def test_a_message_sent_again_is_the_same_message_under_the_same_idempotency_key(
    make_account: Any, receiver: AlertReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An answer after the read timeout: the next run sends that message again as it was
    (not regrouped with the alerts raised since), so its `Idempotency-Key` repeats with it."""
    monkeypatch.setenv(
        "SOURCES__RESEND_IMPORTS__ALERTS__SINCE_HOURS", "5"
    )  # the history ends 4 h ago: a few alerts
    account = live_account(make_account)
    receiver.hold_seconds = 1.0  # takes each message, answers after the client gave up (0.5 s)
    account.sync(account.pipeline())
    assert len(receiver.received) == 2  # one message a channel, taken, answer too late
    in_doubt = [alert["alert_key"] for alert in receiver.webhook_alerts()]
    assert 0 < len(in_doubt) < 20  # not a full message: new alerts could have joined it
    receiver.hold_seconds = 0.0
    account.store.advance(new=25, seconds=1800)
    fail_some_open_imports(account)
    account.sync(account.pipeline())
    keys = outbox_keys(account)
    assert len(set(keys) - set(in_doubt)) >= 6
    by_header: Dict[Optional[str], List[List[str]]] = defaultdict(list)
    for message in receiver.received:
        if message["path"] == "/webhook":
            alert_keys = [alert["alert_key"] for alert in message["body"]["alerts"]]
            header = message["idempotency_key"]
            assert header == hashlib.sha256("\n".join(alert_keys).encode()).hexdigest()
            by_header[header].append(alert_keys)
    assert [sent for sent in by_header.values() if len(sent) > 1] == [[in_doubt, in_doubt]]
    for channel, counts in received(receiver).items():  # the message in doubt, once more
        assert counts == Counter(keys) + Counter(in_doubt), channel


@pytest.mark.parametrize("body", ["cut", "late"])
def test_a_2xx_whose_body_is_cut_or_late_is_acceptance_and_nothing_is_sent_again(
    make_account: Any, receiver: AlertReceiver, body: str
) -> None:
    """The status decides: a 200 whose body stops short, or comes after the read timeout
    (0.5 s), took the message; the next run sends none of its alerts again."""
    account = live_account(make_account)
    receiver.body_fault = body
    summary = account.sync(account.pipeline())
    assert summary.delivery is not None
    assert summary.delivery.problems == [] and summary.delivery.waiting == 0
    first = outbox_keys(account)
    assert first and received(receiver)["webhook"] == Counter(first)
    receiver.body_fault = None
    account.sync(account.pipeline())
    assert_each_once(receiver, outbox_keys(account))


def test_a_ledger_that_cannot_be_read_stops_delivery_in_one_line_and_loses_nothing(
    make_account: Any, receiver: AlertReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    account = live_account(make_account)
    folder = account.workdir / "pipelines"
    folder.mkdir()
    (folder / LEDGER).write_bytes(b"not a database " * 100)
    summary = account.sync(account.pipeline())
    assert summary.rows > 0 and summary.delivery is None  # the load stands, nothing sent
    assert receiver.received == []
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and f"delivery ledger {folder / LEDGER}" in warnings[0]
    (folder / LEDGER).unlink()  # as the warning says: the destination's marks then stand alone
    account.sync(account.pipeline())
    assert_each_once(receiver, outbox_keys(account))
