"""Installs of earlier versions upgrade with nothing lost, nothing listed again and no
spurious history: the real old connector (from this repository's git history) syncs first,
then this version continues from what it left."""

import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Dict, Set, cast

import pytest
from dlt.common.destination.client import WithStateSync
from dlt.pipeline.state_sync import load_pipeline_state_from_destination

from benchmarks.contenders import baseline_tree
from resend_imports.config import alert_rules, source_arguments
from resend_imports.records import fingerprint, to_row

from .conftest import API_KEY, Account

VERSIONS = {
    "a902bc1": "the first version: no history table, no deleted_at, fingerprints `s|n,n,...`",
}
LAST_VERSION = "88b89e6"
# the last version that read its settings under [sources.resend], [alerts] and [resend_imports]
BEFORE_ONE_SECTION = "3f2f68f"
# the last version whose source, schema and state were named `resend`
BEFORE_ONE_NAME = "0ed1e25"
# the middle of history: in `make reliability` (`make test` keeps the first version and the
# rename)
OLDER_VERSIONS = {
    "96b5e11": "the state from the destination, deleted_at and 404 tracking",
    "88b89e6": "the last version before the table became the reference of every run",
    "e803479": "the source package renamed resend_imports",
}


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
) -> Account:
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
    for table in ("contact_imports", "contact_import_status_history"):  # the account column
        assert account.query(f"SELECT DISTINCT account FROM {{dataset}}.{table}") == [("default",)]
    written = account.query(
        "SELECT import_id FROM {dataset}.contact_import_status_history WHERE observed_at >= %s",
        upgraded_at,
    )
    assert sorted(row[0] for row in written) == sorted(changed)  # no spurious history row
    account.store.advance(new=5, seconds=600)
    assert account.sync(account.pipeline()).mode == "incremental"
    assert account.differences() == []
    return account


@pytest.mark.parametrize("commit", sorted(VERSIONS))
def test_an_install_of_an_earlier_version_upgrades_in_place(
    commit: str, make_account: Any, tmp_path: Path
) -> None:
    upgrade_from(commit, make_account, tmp_path)


@pytest.mark.reliability
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


def committed_sources(account: Account) -> Set[str]:
    """The sources whose state the destination's newest committed state holds."""
    pipeline = account.pipeline("truth_check")
    with pipeline.destination_client() as client:
        stored = load_pipeline_state_from_destination("resend_imports", cast(WithStateSync, client))
    return set((stored or {}).get("sources", {}))


def test_an_install_from_before_the_rename_keeps_one_schema_and_one_state(
    make_account: Any, tmp_path: Path, caplog: Any
) -> None:
    """The schema and the state move from `resend` to `resend_imports`: one schema, the
    pipeline's default, and one state, in the working folder and in the destination; a wiped
    folder then continues from the destination."""
    with caplog.at_level("INFO", logger="resend_imports"):
        account = upgrade_from(BEFORE_ONE_NAME, make_account, tmp_path)
    assert sum("schema 'resend' is now named 'resend_imports'" in m for m in caplog.messages) == 1
    assert sum("moves to sources.resend_imports" in m for m in caplog.messages) == 1

    pipeline = account.pipeline()
    assert pipeline.schema_names == ["resend_imports"]
    assert str(pipeline.default_schema_name) == "resend_imports"
    assert set(pipeline.state["sources"]) == {"resend_imports"}
    assert committed_sources(account) == {"resend_imports"}
    columns = pipeline.default_schema.get_table_columns("contact_imports")
    assert {"id", "status", "counts__total", "deleted_at"} <= set(columns)

    shutil.rmtree(account.workdir / "pipelines")
    account.store.advance(new=3, seconds=600)
    summary = account.sync(account.pipeline())
    assert (summary.mode, summary.new) == ("incremental", 3)
    assert account.differences() == []


def test_a_folder_wiped_at_the_upgrade_continues_from_the_old_name(
    make_account: Any, tmp_path: Path
) -> None:
    """The first run of this version on an empty working folder finds the state an install
    from before the rename committed under `sources.resend`: nothing is listed again."""
    tree = old_version(BEFORE_ONE_NAME, tmp_path)
    account: Account = make_account(imports=300, stuck=2, history_end=datetime.now(UTC))
    sync_with(tree, account)
    shutil.rmtree(account.workdir / "pipelines")
    account.store.advance(new=4, seconds=600)

    summary = account.sync(account.pipeline())

    assert (summary.mode, summary.new) == ("incremental", 4)
    assert account.differences() == []
    assert "resend_imports" in committed_sources(account)
    account.store.advance(new=2, seconds=600)
    assert account.sync(account.pipeline()).mode == "incremental"
    assert account.differences() == []
    pipeline = account.pipeline()
    assert pipeline.schema_names == ["resend_imports"]
    assert str(pipeline.default_schema_name) == "resend_imports"


def test_an_install_on_postgresql_upgrades_in_place(make_account: Any, tmp_path: Path) -> None:
    upgrade_from(LAST_VERSION, make_account, tmp_path, "postgres")


@pytest.mark.reliability
@pytest.mark.parametrize("commit", sorted(OLDER_VERSIONS))
def test_more_earlier_versions_upgrade_in_place(
    commit: str, make_account: Any, tmp_path: Path
) -> None:
    upgrade_from(commit, make_account, tmp_path)
