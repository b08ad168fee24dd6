"""Installs of earlier versions upgrade with nothing lost, nothing listed again and no
spurious history: the real old connector (from this repository's git history) syncs first,
then this version continues from what it left."""

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Dict, Set

import pytest

from benchmarks.bench import baseline_tree
from sources.resend_imports.config import alert_rules, source_arguments
from sources.resend_imports.records import fingerprint, to_row

from .conftest import API_KEY, Account

VERSIONS = {
    "a902bc1": "the first version: no history table, no deleted_at, fingerprints `s|n,n,...`",
    "96b5e11": "the state from the destination, deleted_at and 404 tracking",
    "88b89e6": "the last version before the table became the reference of every run",
}
LAST_VERSION = "88b89e6"
# the last version that read its settings under [sources.resend], [alerts] and [resend_imports]
BEFORE_ONE_SECTION = "3f2f68f"
# the heavier middle of history: in `make reliability`
OLDER_VERSIONS = {"e803479": "the source package renamed resend_imports"}


old_version = baseline_tree  # the tree of a commit, unpacked from this repository's history


def sync_with(tree: Path, account: Account) -> None:
    environment = {
        **os.environ,
        "PYTHONPATH": str(tree),
        "RESEND_API_KEY": API_KEY,
        "RESEND_API_URL": account.url,
        "DESTINATION__DUCKDB__CREDENTIALS": str(account.duckdb_path),
        "DLT_DATA_DIR": str(account.workdir),
    }
    if account.postgres is not None:
        environment["DESTINATION__POSTGRES__CREDENTIALS"] = account.postgres.dsn()
    destination = ["--destination", account.destination_name]
    result = subprocess.run(
        [sys.executable, "-m", "pipelines", "sync", *destination],
        cwd=tree,
        env=environment,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-2000:]


def states(account: Account) -> Dict[str, str]:
    return {item["id"]: fingerprint(to_row(item)) for item in account.store.truth()}


def upgrade_from(
    commit: str, make_account: Any, tmp_path: Path, destination: str = "duckdb"
) -> None:
    tree = old_version(commit, tmp_path)
    account: Account = make_account(
        imports=400, stuck=2, history_end=datetime.now(UTC), destination=destination
    )
    sync_with(tree, account)
    account.store.advance(new=20, seconds=600)
    sync_with(tree, account)  # open imports known to the old state, with its fingerprints
    loaded = states(account)
    account.store.advance(new=10, seconds=600)
    changed: Set[str] = {i for i, printed in states(account).items() if loaded.get(i) != printed}
    upgraded_at = datetime.now(UTC)

    summary = account.sync(account.pipeline())

    assert summary.mode == "incremental"  # nothing listed again
    assert summary.new == 10 and summary.new + summary.updated == len(changed)
    assert account.differences() == []
    written = account.query(
        "SELECT import_id FROM {dataset}.contact_import_status_history WHERE observed_at >= %s",
        upgraded_at,
    )
    assert sorted(row[0] for row in written) == sorted(changed)  # no spurious history row
    account.store.advance(new=5, seconds=600)
    assert account.sync(account.pipeline()).mode == "incremental"
    assert account.differences() == []


@pytest.mark.parametrize("commit", sorted(VERSIONS))
def test_an_install_of_an_earlier_version_upgrades_in_place(
    commit: str, make_account: Any, tmp_path: Path
) -> None:
    upgrade_from(commit, make_account, tmp_path)


def test_an_install_configured_the_earlier_way_upgrades_with_its_settings(
    make_account: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    """Settings under the sections earlier versions read still count, each with a WARNING
    naming where it moves; nothing is listed again and nothing is lost."""
    monkeypatch.setenv("SOURCES__RESEND__GONE_AFTER_RUNS", "5")
    monkeypatch.setenv("ALERTS__OPEN_HOURS", "48")

    with caplog.at_level("WARNING", logger="resend_imports"):
        upgrade_from(BEFORE_ONE_SECTION, make_account, tmp_path)

    moved = {
        "sources.resend.gone_after_runs": "SOURCES__RESEND_IMPORTS__GONE_AFTER_RUNS",
        "alerts.open_hours": "SOURCES__RESEND_IMPORTS__ALERTS__OPEN_HOURS",
    }
    for old, new in moved.items():
        assert any(old in message and new in message for message in caplog.messages), old
    assert source_arguments({"gone_after_runs": 3}, {"gone_after_runs": 3}) == {
        "gone_after_runs": 5
    }
    assert alert_rules().open_hours == 48.0


def test_an_install_on_postgresql_upgrades_in_place(make_account: Any, tmp_path: Path) -> None:
    upgrade_from(LAST_VERSION, make_account, tmp_path, "postgres")


@pytest.mark.reliability
@pytest.mark.parametrize("commit", sorted(OLDER_VERSIONS))
def test_more_earlier_versions_upgrade_in_place(
    commit: str, make_account: Any, tmp_path: Path
) -> None:
    upgrade_from(commit, make_account, tmp_path)
