"""`resend-imports demo` (what `make demo` runs): two simulated accounts synced by one run,
each account's rows checked against its own simulator; its accounts live in the present so
that it raises only the alerts a real account would; and the README shows what it prints."""

import os
import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Dict, Iterator, List, NamedTuple

import duckdb
import pytest

from resend_imports_pipelines.simulator import ImportStore
from resend_imports_pipelines.simulator.demo import (
    DEMO_ACCOUNTS,
    STEP,
    demo_stores,
    imports_of,
    sync_demo,
)
from resend_imports_pipelines.simulator.verify import COMPARED, differences_of, records_of

from .conftest import COMMAND

README = Path(__file__).resolve().parents[1] / "README.md"
README_FILE = "/home/you/resend-imports/demo.duckdb"  # the path the README's output shows
IMPORTS = 3000  # the demo's default, as `make demo` runs it
DAY = timedelta(hours=24)  # `open_hours` and `since_hours` by default
NAMES = [account.name for account in DEMO_ACCOUNTS]


class Demo(NamedTuple):
    started: datetime
    result: "subprocess.CompletedProcess[str]"
    file: Path


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """One `demo` as `make demo` runs it, with none of the machine's settings."""
    folder = tmp_path_factory.mktemp("demo")
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("RESEND_", "SOURCES__", "DESTINATION__", "ALERTS__", "RUNTIME__"))
    }
    started = datetime.now(UTC)
    result = subprocess.run(
        [COMMAND, "demo"],
        cwd=folder,
        env={**environment, "RUNTIME__DLTHUB_TELEMETRY": "false"},
        capture_output=True,
        text=True,
        timeout=180,
    )
    yield Demo(started, result, folder / "demo.duckdb")


def rows_by_account(file: Path) -> Dict[str, int]:
    with duckdb.connect(str(file), read_only=True) as con:
        rows = con.execute(
            "SELECT account, count(*) FROM resend.contact_imports GROUP BY account"
        ).fetchall()
    return {name: count for name, count in rows}


def test_the_demo_syncs_two_accounts_in_one_run_each_checked(demo: Demo) -> None:
    assert demo.result.returncode == 0, demo.result.stderr
    expected = {a.name: imports_of(a, IMPORTS) + a.arrivals for a in DEMO_ACCOUNTS}
    assert rows_by_account(demo.file) == expected  # both in the `account` column, no other
    assert expected == {"acme": 3005, "globex": 752}
    lines = demo.result.stdout.splitlines()
    verdict = "  each account's rows equal its simulator's imports: acme yes, globex yes"
    assert lines.count(verdict) == 2, demo.result.stdout
    for name in NAMES:  # a line per account in each run's summary, as a real run prints it
        assert sum(line.startswith(f"  account {name}: new ") for line in lines) == 2
    assert sum(line.startswith("  total: new ") for line in lines) == 2
    assert "re_demo" not in demo.result.stdout + demo.result.stderr  # never a key


def test_each_demo_account_s_rows_equal_its_truth(tmp_path: Path) -> None:
    """The demo's own check, done again here from the file and the simulators' final data."""
    stores = demo_stores(200)
    file = tmp_path / "demo.duckdb"

    assert sync_demo(stores, file) == 0

    with duckdb.connect(str(file), read_only=True) as con:
        for name, store in stores.items():
            rows = con.execute(
                f"SELECT id, deleted_at IS NOT NULL, {', '.join(COMPARED)}"
                " FROM resend.contact_imports WHERE account = ?",
                [name],
            ).fetchall()
            assert differences_of(records_of(rows), store.truth()) == [], name
    assert rows_by_account(file) == {"acme": 205, "globex": 52}


class Forgetful(ImportStore):
    """An account whose truth leaves out its newest import: the table then holds one more."""

    def truth(self) -> List[Dict[str, Any]]:
        return super().truth()[1:]


def test_the_demo_fails_when_an_account_s_rows_differ_from_its_truth(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stores = demo_stores(40)
    stores["globex"] = Forgetful(10, seed=DEMO_ACCOUNTS[1].seed)

    assert sync_demo(stores, tmp_path / "demo.duckdb") == 1

    printed = capsys.readouterr().out
    assert printed.count("imports: acme yes, globex NO") == 2, printed
    assert "    globex: unexpected import " in printed


def test_the_demo_raises_only_the_alerts_a_real_account_would(demo: Demo) -> None:
    """For each account: failures of the last day and imports open for more than a day;
    never an import that has just arrived, never a failure older than the first sync's
    window."""
    assert demo.result.returncode == 0, demo.result.stderr
    with duckdb.connect(str(demo.file), read_only=True) as con:
        newest = dict(
            con.execute(
                "SELECT account, max(created_at) FROM resend.contact_imports GROUP BY account"
            ).fetchall()
        )
        alerts = con.execute(
            "SELECT a.account, a.rule, a.raised_at, i.created_at, i.completed_at"
            " FROM resend.contact_import_alerts a"
            " JOIN resend.contact_imports i ON i.account = a.account AND i.id = a.import_id"
        ).fetchall()
    for account in DEMO_ACCOUNTS:
        # each history ends now; the arrivals are up to one step ahead of it
        assert demo.started - timedelta(hours=1) < newest[account.name]
        assert newest[account.name] <= datetime.now(UTC) + STEP
        own = [alert for alert in alerts if alert[0] == account.name]
        assert {rule for _, rule, *_ in own} == {"failed", "high_failure_rate", "open_too_long"}
        assert len(own) < 0.03 * imports_of(account, IMPORTS), own
    for _, rule, raised_at, created_at, completed_at in alerts:
        if rule == "open_too_long":
            assert completed_at is None and raised_at - created_at > DAY
        else:
            assert raised_at - DAY <= completed_at <= raised_at


def _readme_output() -> str:
    blocks = re.findall(r"^```text\n(simulator at .*?)^```", README.read_text(), re.M | re.S)
    assert len(blocks) == 1, "the README shows the demo's output once, in a text block"
    return str(blocks[0])


def _comparable(output: str) -> List[str]:
    """The output without what differs from run to run: the port, timings, clock times and
    the command's own path."""
    replacements = (
        (r"http://127\.0\.0\.1:\d+", "http://127.0.0.1:PORT"),
        (r"; \d+\.\d+s$", "; N.NNs"),
        (r"\d{4}-\d\d-\d\d \d\d:\d\d$", "YYYY-MM-DD HH:MM"),
        (r"^explore it: \S+ ", "explore it: resend-imports "),
    )
    lines = []
    for line in output.strip().splitlines():
        for pattern, replacement in replacements:
            line = re.sub(pattern, replacement, line)
        lines.append(line)
    return lines


def test_the_readme_shows_what_the_demo_prints(demo: Demo) -> None:
    assert demo.result.returncode == 0, demo.result.stderr
    printed = demo.result.stdout.replace(str(demo.file.resolve()), README_FILE)
    assert _comparable(printed) == _comparable(_readme_output()), (
        "update the demo's output in README.md, Try it (from `make demo`)"
    )
