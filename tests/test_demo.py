"""`resend-imports demo` (what `make demo` runs): it checks itself, its account lives in the
present so that it raises only the alerts a real account would, and the README shows what it
prints."""

import os
import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Iterator, List, NamedTuple

import duckdb
import pytest

from pipelines.simulator.demo import ARRIVALS, STEP

from .conftest import COMMAND

README = Path(__file__).resolve().parents[1] / "README.md"
README_FILE = "/home/you/resend-imports/demo.duckdb"  # the path the README's output shows
IMPORTS = 3000  # the demo's default, as `make demo` runs it
DAY = timedelta(hours=24)  # `open_hours` and `since_hours` by default


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


def test_the_demo_raises_only_the_alerts_a_real_account_would(demo: Demo) -> None:
    """Failures of the last day and imports open for more than a day; never an import that
    has just arrived, never a failure older than the first sync's window."""
    assert demo.result.returncode == 0, demo.result.stderr
    with duckdb.connect(str(demo.file), read_only=True) as con:
        count, newest = con.execute(
            "SELECT count(*), max(created_at) FROM resend.contact_imports"
        ).fetchone() or (0, None)
        alerts = con.execute(
            "SELECT a.rule, a.raised_at, i.created_at, i.completed_at"
            " FROM resend.contact_import_alerts a"
            " JOIN resend.contact_imports i ON i.id = a.import_id"
        ).fetchall()
    assert count == IMPORTS + ARRIVALS
    # the history ends now; the arrivals are up to one step ahead of it
    assert demo.started - timedelta(hours=1) < newest <= datetime.now(UTC) + STEP
    rules = {rule for rule, *_ in alerts}
    assert rules == {"failed", "high_failure_rate", "open_too_long"}, alerts
    assert len(alerts) < 0.01 * IMPORTS
    for rule, raised_at, created_at, completed_at in alerts:
        if rule == "open_too_long":
            assert completed_at is None and raised_at - created_at > DAY
        else:
            assert raised_at - DAY <= completed_at <= raised_at


def _readme_output() -> str:
    blocks = re.findall(r"^```text\n(simulator with .*?)^```", README.read_text(), re.M | re.S)
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
