"""Import outcome alerts: the rules against the simulator's truth, the outbox in the
destination, delivery to a local receiver standing in for Slack and a webhook, exactly once.

The account's clock is anchored to the real clock (the rules compare `created_at` with the
run's clock). Expected alerts are computed here from the simulator's truth, independently of
the connector's code.
"""

import json
import logging
import os
import signal
import subprocess
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any, Dict, List, Optional, Set, Tuple

import pytest

from resend_imports.records import parse_timestamp
from resend_imports_pipelines.delivery.channels import (
    PAYLOAD_COLUMNS,
    slack_message,
    webhook_payload,
)

from .alert_receiver import AlertReceiver
from .conftest import COMMAND, Account, cli_environment

OPEN = ("queued", "in_progress")
SINCE_HOURS = 24.0
OPEN_HOURS = 2.0
FAILURE_RATE = 0.05
SECRET = "T0AAA/B0BBB/hookSecretXyz123"


def live_account(make_account: Any, imports: int = 300, seed: int = 3, **options: Any) -> Account:
    """An account whose history ends 4 hours before the real clock (20 runs of 10 minutes
    each stay in the past)."""
    end = datetime.now(UTC) - timedelta(hours=4)
    account: Account = make_account(imports, seed, stuck=4, history_end=end, **options)
    return account


def rules_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCES__RESEND_IMPORTS__ALERTS__OPEN_HOURS", str(OPEN_HOURS))
    monkeypatch.setenv("SOURCES__RESEND_IMPORTS__ALERTS__SINCE_HOURS", str(SINCE_HOURS))
    monkeypatch.setenv("SOURCES__RESEND_IMPORTS__ALERTS__INITIAL_BACKOFF_SECONDS", "0.05")
    monkeypatch.setenv("SOURCES__RESEND_IMPORTS__ALERTS__MAX_BACKOFF_SECONDS", "0.2")
    monkeypatch.setenv("SOURCES__RESEND_IMPORTS__ALERTS__READ_TIMEOUT_SECONDS", "0.5")


def channels_env(monkeypatch: pytest.MonkeyPatch, receiver: AlertReceiver) -> None:
    monkeypatch.setenv("RUNTIME__SLACK_INCOMING_HOOK", receiver.url(f"/slack/{SECRET}"))
    monkeypatch.setenv("SOURCES__RESEND_IMPORTS__ALERTS__WEBHOOK_URL", receiver.url("/webhook"))


class Expected:
    """The alerts the rules call for, run after run, from the simulator's truth."""

    def __init__(self) -> None:
        self.before: Optional[Dict[str, Dict[str, Any]]] = None
        self.alerts: Set[Tuple[str, str]] = set()
        self.open_alerted: Set[str] = set()

    def after_run(self, truth: List[Dict[str, Any]], now: datetime) -> None:
        since = now - timedelta(hours=SINCE_HOURS)
        first = self.before is None
        for item in truth:
            status, counts = item.get("status"), item.get("counts") or {}
            created = parse_timestamp(item["created_at"])
            happened = parse_timestamp(item.get("completed_at") or item["created_at"])
            was = (self.before or {}).get(item["id"], {}).get("status")
            fresh = happened >= since if first else was != status
            total, failed = counts.get("total"), counts.get("failed")
            if status == "failed" and fresh:
                self.alerts.add((item["id"], "failed"))
            rate = failed / total if total and failed is not None else None
            if status == "completed" and rate is not None and rate >= FAILURE_RATE and fresh:
                self.alerts.add((item["id"], "high_failure_rate"))
            crossed = created + timedelta(hours=OPEN_HOURS)
            if status in OPEN and crossed <= now and item["id"] not in self.open_alerted:
                self.open_alerted.add(item["id"])
                if not first or crossed >= since:
                    self.alerts.add((item["id"], "open_too_long"))
        self.before = {item["id"]: item for item in truth}


def outbox(account: Account) -> List[Dict[str, Any]]:
    names = ["alert_key", "import_id", "rule", "status", "delivered_at", "failure_rate"]
    rows = account.query(f"SELECT {', '.join(names)} FROM {{dataset}}.contact_import_alerts")
    return [dict(zip(names, row, strict=True)) for row in rows]


def sync_at(account: Account, pipeline: Any, **options: Any) -> Any:
    """A sync; the truth it must match is the account's when the sync starts."""
    truth = account.store.truth()
    summary = account.sync(pipeline, **options)
    return summary, truth, datetime.now(UTC)


def test_rules_raise_exactly_the_alerts_the_truth_calls_for(
    make_account: Any, destination_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rules_env(monkeypatch)
    account = live_account(make_account)
    pipeline = account.pipeline()
    expected = Expected()
    for run in range(4):
        if run:
            account.store.advance(new=25, seconds=1800)
        summary, truth, now = sync_at(account, pipeline)
        if run == 0:
            since = now - timedelta(hours=SINCE_HOURS)
            old_failures = {
                i["id"]
                for i in truth
                if i["status"] == "failed" and parse_timestamp(i["completed_at"]) < since
            }
        expected.after_run(truth, now)
        rows = outbox(account)
        assert {(row["import_id"], row["rule"]) for row in rows} == expected.alerts, run
        assert len({row["alert_key"] for row in rows}) == len(rows)
        assert summary.delivery is not None and summary.delivery.sent == {}
    rules = Counter(rule for _, rule in expected.alerts)
    assert rules["failed"] and rules["high_failure_rate"] and rules["open_too_long"], rules
    # the first run raised nothing older than since_hours, and the history has such imports
    assert old_failures and not old_failures & {import_id for import_id, _ in expected.alerts}
    for row in outbox(account):
        if row["rule"] == "high_failure_rate":
            assert row["failure_rate"] >= FAILURE_RATE


def test_a_rerun_a_full_refresh_and_a_lost_local_state_raise_nothing_twice(
    make_account: Any, destination_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rules_env(monkeypatch)
    account = live_account(make_account)
    receiver = AlertReceiver()
    channels_env(monkeypatch, receiver)
    account.sync(account.pipeline())
    first = len(receiver.webhook_alerts())
    assert first == len(outbox(account)) > 0
    account.sync(account.pipeline())
    account.sync(account.pipeline(), full_refresh=True)
    fresh = account.pipeline()
    fresh.drop()  # the local working folder is lost; the destination keeps the state
    account.sync(account.pipeline())
    assert len(receiver.webhook_alerts()) == first
    assert Counter(receiver.slack_keys()) == Counter(a["alert_key"] for a in outbox(account))
    assert all(row["delivered_at"] is not None for row in outbox(account))
    receiver.down()


def test_slack_lists_twenty_alerts_a_message_and_the_webhook_every_column(
    make_account: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    rules_env(monkeypatch)
    # over 40 alerts in one run: most imports lose under 1% of their rows
    monkeypatch.setenv("SOURCES__RESEND_IMPORTS__ALERTS__FAILURE_RATE", "0.005")
    account = live_account(make_account, imports=600)
    receiver = AlertReceiver()
    channels_env(monkeypatch, receiver)
    summary = account.sync(account.pipeline())
    alerts = outbox(account)
    assert summary.alerts_raised == len(alerts) > 40
    slack = [m["body"]["text"] for m in receiver.received if m["path"].startswith("/slack")]
    assert len(slack) == -(-len(alerts) // 20)
    assert all(text.count(" key `") <= 20 for text in slack)
    assert f"and {len(alerts) - 20} more" in slack[0]
    webhook = receiver.webhook_alerts()
    assert sorted(a["alert_key"] for a in webhook) == sorted(a["alert_key"] for a in alerts)
    assert set(webhook[0]) >= {
        "alert_key", "import_id", "rule", "status", "counts__total", "counts__failed",
        "failure_rate", "raised_at", "delivered_at", "created_at",
    }  # fmt: skip
    assert "alerts: raised" in "\n".join(summary.lines())
    receiver.down()


def test_an_alert_says_its_account_where_several_accounts_may_alert_on_one_import() -> None:
    alert = {name: None for name in PAYLOAD_COLUMNS} | {
        "alert_key": "imp_1|failed|||||failed",
        "import_id": "imp_1",
        "rule": "failed",
        "status": "failed",
    }
    alerts = [alert | {"account": "acme"}, alert | {"account": "globex"}]
    sent = json.loads(webhook_payload(alerts, 0))["alerts"]
    assert [a["account"] for a in sent] == ["acme", "globex"]
    text = json.loads(slack_message([*alerts, alert | {"account": "default"}], 0))["text"]
    assert text.splitlines()[1:] == [
        "• acme: `imp_1` failed: failed (no counts yet) key `imp_1|failed|||||failed`",
        "• globex: `imp_1` failed: failed (no counts yet) key `imp_1|failed|||||failed`",
        "• `imp_1` failed: failed (no counts yet) key `imp_1|failed|||||failed`",
    ]


@pytest.mark.reliability
def test_twenty_runs_with_a_quarter_of_the_answers_failing_deliver_each_alert_once(
    make_account: Any, destination_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rules_env(monkeypatch)
    account = live_account(make_account)
    monkeypatch.setenv(
        "SOURCES__RESEND_IMPORTS__ALERTS__MAX_ATTEMPTS", "2"
    )  # so that some wait for a later run
    receiver = AlertReceiver(failure_share=0.25, seed=5, slow_seconds=0.8)
    channels_env(monkeypatch, receiver)
    pipeline = account.pipeline()
    expected = Expected()
    runs_leaving_some = 0
    for run in range(20):
        if run:
            account.store.advance(new=15, seconds=600)
        summary, truth, now = sync_at(account, pipeline)
        expected.after_run(truth, now)
        assert summary.delivery is not None
        runs_leaving_some += summary.delivery.waiting > 0
    receiver.failure_share = 0.0
    account.sync(pipeline)  # one more run, answers all good: what waited goes out
    keys = [row["alert_key"] for row in outbox(account)]
    assert {(row["import_id"], row["rule"]) for row in outbox(account)} == expected.alerts
    assert Counter(receiver.slack_keys()) == Counter(keys)  # each exactly once
    assert Counter(a["alert_key"] for a in receiver.webhook_alerts()) == Counter(keys)
    assert all(row["delivered_at"] is not None for row in outbox(account))
    print(
        f"\n{destination_name}: expected {len(expected.alerts)} alerts, delivered"
        f" {len(set(receiver.slack_keys()))} to Slack and"
        f" {len({a['alert_key'] for a in receiver.webhook_alerts()})} to the webhook,"
        f" duplicated {len(receiver.slack_keys()) - len(set(receiver.slack_keys()))};"
        f" {receiver.attempts} POSTs; {runs_leaving_some} of 20 runs left alerts for a later run"
    )
    receiver.down()


@pytest.mark.reliability
def test_a_receiver_down_for_three_runs_gets_everything_then_nothing_twice(
    make_account: Any, destination_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rules_env(monkeypatch)
    monkeypatch.setenv("SOURCES__RESEND_IMPORTS__ALERTS__MAX_ATTEMPTS", "2")
    account = live_account(make_account)
    receiver = AlertReceiver()
    channels_env(monkeypatch, receiver)
    receiver.down()
    pipeline = account.pipeline()
    for run in range(3):
        if run:
            account.store.advance(new=15, seconds=600)
        summary = account.sync(pipeline)
        assert summary.delivery is not None
        assert summary.delivery.waiting == len(outbox(account)) > 0
        assert "wait for the next run" in "\n".join(summary.lines())
        assert SECRET not in "\n".join(summary.lines())
    receiver.up()
    for _ in range(2):
        account.store.advance(new=15, seconds=600)
        summary = account.sync(pipeline)
        assert summary.delivery is not None and summary.delivery.waiting == 0
    keys = [row["alert_key"] for row in outbox(account)]
    assert Counter(receiver.slack_keys()) == Counter(keys)
    assert Counter(a["alert_key"] for a in receiver.webhook_alerts()) == Counter(keys)
    print(f"\n{destination_name}: down 3 runs, then up: {len(keys)} alerts, each once")
    receiver.down()


@pytest.mark.reliability
def test_sigkill_during_delivery_resends_at_most_the_message_in_flight(
    make_account: Any, destination_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rules_env(monkeypatch)
    # over 40 alerts in one run: most imports lose under 1% of their rows
    monkeypatch.setenv("SOURCES__RESEND_IMPORTS__ALERTS__FAILURE_RATE", "0.005")
    account = live_account(make_account, imports=600)
    receiver = AlertReceiver()
    receiver.hold_seconds = 30.0  # takes the first message, then does not answer
    channels_env(monkeypatch, receiver)
    env = cli_environment(account, env={k: v for k, v in os.environ.items() if "ALERTS" in k})
    env["RUNTIME__SLACK_INCOMING_HOOK"] = os.environ["RUNTIME__SLACK_INCOMING_HOOK"]
    command = [COMMAND, "sync", "--destination", destination_name]
    process = subprocess.Popen(
        command, env=env, cwd=account.workdir, stdout=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 60
    while not receiver.received and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    in_flight = set(receiver.slack_keys())
    assert 0 < len(in_flight) <= 20
    receiver.hold_seconds = 0.0
    result = subprocess.run(command, env=env, cwd=account.workdir, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    keys = [row["alert_key"] for row in outbox(account)]
    sent = Counter(receiver.slack_keys())
    assert set(sent) == set(keys) and len(keys) > 20
    duplicated = {key for key, times in sent.items() if times > 1}
    assert duplicated <= in_flight and max(sent.values()) <= 2
    assert Counter(a["alert_key"] for a in receiver.webhook_alerts()) == Counter(keys)
    print(
        f"\n{destination_name}: SIGKILL during delivery: {len(keys)} alerts,"
        f" {len(duplicated)} sent twice (the message in flight: {len(in_flight)})"
    )
    receiver.down()


def test_fail_on_alert_exits_4_and_the_hook_url_is_nowhere(
    make_account: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    rules_env(monkeypatch)
    account = live_account(make_account)
    receiver = AlertReceiver()
    receiver.down()  # failures print lines: none may carry the URL
    channels_env(monkeypatch, receiver)
    env = cli_environment(account, env={k: v for k, v in os.environ.items() if "ALERTS" in k})
    env["RUNTIME__SLACK_INCOMING_HOOK"] = os.environ["RUNTIME__SLACK_INCOMING_HOOK"]
    outputs = []
    for args, code in (
        (["sync", "--fail-on-alert", "--log-level", "DEBUG"], 4),
        (["sync", "--fail-on-alert"], 0),  # nothing new raised
        (["report"], 0),
    ):
        result = subprocess.run(
            [COMMAND, *args], env=env, cwd=account.workdir, capture_output=True, text=True
        )
        assert result.returncode == code, result.stderr
        outputs.append(result.stdout + result.stderr)
    assert "alerts: raised" in outputs[0] and "wait for the next run" in outputs[0]
    assert "Alerts" in outputs[2]
    assert not any(SECRET in output for output in outputs)
    token = SECRET.split("/")[-1].encode()
    for path in account.workdir.rglob("*"):
        if path.is_file():
            assert token not in path.read_bytes(), path
    receiver.down()


def test_a_hook_that_is_not_https_fails_in_one_line_without_showing_it(
    account: Account,
) -> None:
    env = cli_environment(
        account,
        env={"SOURCES__RESEND_IMPORTS__ALERTS__WEBHOOK_URL": f"http://example.com/{SECRET}"},
    )
    result = subprocess.run(
        [COMMAND, "sync"], env=env, cwd=account.workdir, capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "must be an https:// URL (http:// only to loopback)" in result.stderr
    assert SECRET not in result.stderr + result.stdout
    assert account.requests() == 0  # refused before any request


def test_alerts_can_be_switched_off(make_account: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    rules_env(monkeypatch)
    monkeypatch.setenv("SOURCES__RESEND_IMPORTS__ALERTS__ENABLED", "false")
    account = live_account(make_account)
    summary = account.sync(account.pipeline())
    assert summary.alerts_raised == 0
    monkeypatch.setenv("SOURCES__RESEND_IMPORTS__ALERTS__ENABLED", "true")
    monkeypatch.setenv("SOURCES__RESEND_IMPORTS__ALERTS__FAILED", "false")
    monkeypatch.setenv("SOURCES__RESEND_IMPORTS__ALERTS__HIGH_FAILURE_RATE", "false")
    account.store.advance(new=40, seconds=1800)
    account.sync(account.pipeline())
    assert {row["rule"] for row in outbox(account)} == {"open_too_long"}


def test_the_outbox_is_there_from_the_first_run_empty_until_an_alert(
    make_account: Any, destination_name: str
) -> None:
    account: Account = make_account(imports=200, stuck=2)  # its history ended long ago
    pipeline = account.pipeline()
    assert account.sync(pipeline).alerts_raised == 0  # the first run replays nothing old
    assert outbox(account) == []
    versions = account.query("SELECT count(*) FROM {dataset}._dlt_version")
    assert account.sync(pipeline).alerts_raised == 0
    assert account.query("SELECT count(*) FROM {dataset}._dlt_version") == versions
    account.store.advance(new=5, seconds=600)
    assert account.sync(pipeline).alerts_raised > 0
    assert outbox(account) and all(row["delivered_at"] is None for row in outbox(account))


@pytest.mark.reliability
def test_a_message_taken_but_answered_late_is_sent_once_more_at_most(
    make_account: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sent without an answer, a message may have been taken: not retried within the run
    (each attempt could be one more copy), sent again by the next run."""
    rules_env(monkeypatch)  # read timeout 0.5 s
    monkeypatch.setenv("SOURCES__RESEND_IMPORTS__ALERTS__MAX_ATTEMPTS", "4")
    account = live_account(make_account)
    receiver = AlertReceiver()
    receiver.hold_seconds = 1.0  # takes each message, answers after the client gave up
    channels_env(monkeypatch, receiver)
    summary = account.sync(account.pipeline())
    assert summary.delivery is not None and "no answer in time" in "\n".join(summary.lines())
    assert len(receiver.received) == 2  # one message per channel, not one per attempt
    receiver.hold_seconds = 0.0
    account.sync(account.pipeline())
    keys = [row["alert_key"] for row in outbox(account)]
    sent = Counter(receiver.slack_keys())
    assert set(sent) == set(keys) and max(sent.values()) == 2
    assert sum(times == 2 for times in sent.values()) <= 20  # the first message only
    assert all(row["delivered_at"] is not None for row in outbox(account))
    receiver.down()


def test_an_open_import_deleted_then_back_failed_is_alerted(
    make_account: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    rules_env(monkeypatch)
    account = live_account(make_account)
    pipeline = account.pipeline()
    account.sync(pipeline)
    target = account.store.open_ids()[0]
    account.store.delete(target)
    account.sync(pipeline, gone_after_runs=1)
    assert account.query(
        "SELECT count(*) FROM {dataset}.contact_imports WHERE deleted_at IS NOT NULL"
    ) == [(1,)]
    account.store.undelete(target)
    finished = datetime.now(UTC) - timedelta(minutes=5)
    counts = {"total": 10, "created": 0, "updated": 0, "skipped": 0, "failed": 10}
    account.store.set_field(target, status="failed", completed_at=finished, counts=counts)
    account.sync(pipeline)
    assert (target, "failed") in {(row["import_id"], row["rule"]) for row in outbox(account)}


def test_alerts_turned_on_later_or_a_filtered_first_run_replay_nothing_old(
    make_account: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    rules_env(monkeypatch)
    account = live_account(make_account, imports=1500)  # about five days of history
    old_failures = [i["id"] for i in account.store.truth() if i["status"] == "failed"]
    summary = account.sync(account.pipeline(), status="failed")  # a first, filtered run
    since = datetime.now(UTC) - timedelta(hours=SINCE_HOURS)
    recent = {
        i["id"]
        for i in account.store.truth()
        if i["status"] == "failed" and parse_timestamp(i["completed_at"]) >= since
    }
    assert {row["import_id"] for row in outbox(account)} == recent
    assert summary.alerts_raised == len(recent) < len(old_failures)

    other = live_account(make_account, imports=1500, seed=9)
    monkeypatch.setenv("SOURCES__RESEND_IMPORTS__ALERTS__ENABLED", "false")
    other.sync(other.pipeline())
    monkeypatch.setenv("SOURCES__RESEND_IMPORTS__ALERTS__ENABLED", "true")
    other.store.advance(new=5, seconds=600)
    other.sync(other.pipeline())
    raised = outbox(other)
    created = {i["id"]: parse_timestamp(i["created_at"]) for i in other.store.truth()}
    for row in raised:  # nothing that crossed the open limit before since_hours
        if row["rule"] == "open_too_long":
            assert created[row["import_id"]] + timedelta(hours=OPEN_HOURS) >= since


def test_bad_delivery_settings_fail_before_the_run_and_urls_are_parsed_as_sent(
    account: Account,
) -> None:
    for env, text in (
        ({"SOURCES__RESEND_IMPORTS__ALERTS__MAX_ATTEMPTS": "0"}, "max_attempts must be at least 1"),
        (
            {
                "SOURCES__RESEND_IMPORTS__ALERTS__WEBHOOK_URL": "http://evil.example\\@127.0.0.1/"
                + SECRET
            },
            "must be an https:// URL",
        ),
        (
            {"SOURCES__RESEND_IMPORTS__ALERTS__WEBHOOK_URL": "http://user:pw@127.0.0.1/" + SECRET},
            "must be an https://",
        ),
        (  # a pasted typographic quote
            {"SOURCES__RESEND_IMPORTS__ALERTS__WEBHOOK_URL": f"http://127.0.0.1/{SECRET}\u2019"},
            "alerts]) holds a character that is not ASCII",
        ),
        (  # dlt decodes the Slack hook as ASCII when the pipeline is made: exit 3 before
            {"RUNTIME__SLACK_INCOMING_HOOK": f"https://hooks.slack.com/{SECRET}\u2019"},
            "RUNTIME__SLACK_INCOMING_HOOK (runtime.slack_incoming_hook) holds a character that"
            " is not ASCII (a pasted quote or dash?); the value is not shown",
        ),
    ):
        hook = {"SOURCES__RESEND_IMPORTS__ALERTS__WEBHOOK_URL": "http://127.0.0.1:9/hook", **env}
        result = subprocess.run(
            [COMMAND, "sync"],
            env=cli_environment(account, env=hook),
            cwd=account.workdir,
            capture_output=True,
            text=True,
        )
        assert result.returncode == 1 and text in result.stderr, result.stderr
        assert SECRET not in result.stderr + result.stdout
    assert account.requests() == 0  # refused before any request


def test_debug_logs_of_a_delivery_do_not_carry_the_hook(
    make_account: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    rules_env(monkeypatch)
    account = live_account(make_account)
    receiver = AlertReceiver()
    channels_env(monkeypatch, receiver)
    with caplog.at_level(logging.DEBUG):
        summary = account.sync(account.pipeline())
    assert summary.delivery is not None and summary.delivery.sent["Slack"] > 0
    assert caplog.records and SECRET.split("/")[-1] not in caplog.text
    receiver.down()
