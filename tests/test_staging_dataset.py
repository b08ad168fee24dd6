"""dlt merges through a staging dataset: a sync never replaces the tables of a dataset of its
own that happens to carry that name (`resend` and `resend_staging` is a common pair)."""

from datetime import UTC, datetime
from typing import Any, List

import pytest

from resend_imports_pipelines.failures import explain

from .conftest import Account


def tables_of(account: Account, dataset: str) -> List[str]:
    rows = account.query(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s ORDER BY 1",
        dataset,
    )
    return [row[0] for row in rows]


def snapshot(account: Account, dataset: str) -> Any:
    imports = account.query(
        "SELECT id, status, counts__total FROM {dataset}.contact_imports ORDER BY id",
        dataset=dataset,
    )
    alerts = account.query(
        "SELECT alert_key FROM {dataset}.contact_import_alerts ORDER BY 1", dataset=dataset
    )
    return imports, alerts


def test_a_dataset_named_like_dlts_default_staging_is_left_alone(
    make_account: Any, destination_name: str
) -> None:
    account: Account = make_account(imports=600, history_end=datetime.now(UTC))
    account.sync(account.pipeline(dataset="resend_staging"))
    before = snapshot(account, "resend_staging")
    assert len(before[0]) == 600 and before[1]  # imports and alerts of its own
    account.store.advance(new=30, seconds=600)
    for _ in range(2):
        account.sync(account.pipeline(dataset="resend"))
        account.store.advance(new=5, seconds=600)
    assert snapshot(account, "resend_staging") == before  # untouched by the syncs of `resend`
    assert "contact_imports" in tables_of(account, "resend_dlt_staging")  # dlt's, by name
    assert account.differences(dataset="resend_staging") != []  # it has not synced since
    account.sync(account.pipeline(dataset="resend_staging"))
    assert account.differences(dataset="resend_staging") == []


def test_a_staging_layout_that_names_a_dataset_of_its_own_is_refused_before_writing(
    make_account: Any, destination_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a `dlt init` user with dlt's default layout gets: one line, nothing written."""
    monkeypatch.setenv("DESTINATION__STAGING_DATASET_NAME_LAYOUT", "%s_staging")
    account: Account = make_account(imports=300, history_end=datetime.now(UTC))
    account.sync(account.pipeline(dataset="resend_staging"))
    before = snapshot(account, "resend_staging")
    with pytest.raises(Exception) as failure:
        account.sync(account.pipeline(dataset="resend"))
    message = explain(failure.value)
    assert message is not None and "\n" not in message
    assert "staging dataset resend_staging, which is a dataset of its own" in message
    assert "nothing was written" in message
    assert snapshot(account, "resend_staging") == before
    assert "contact_imports" not in tables_of(account, "resend")


def test_an_install_merging_through_the_old_staging_name_keeps_working(
    make_account: Any, destination_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    account: Account = make_account(imports=300)
    monkeypatch.setenv("DESTINATION__STAGING_DATASET_NAME_LAYOUT", "%s_staging")
    account.sync(account.pipeline())
    assert "contact_imports" in tables_of(account, "resend_staging")  # dlt's staging copies
    monkeypatch.delenv("DESTINATION__STAGING_DATASET_NAME_LAYOUT")
    account.store.advance(new=20, seconds=600)
    assert account.sync(account.pipeline()).mode == "incremental"  # no refusal: not a dataset
    assert account.differences() == []


def test_the_staging_copies_are_empty_after_a_duckdb_sync(account: Account) -> None:
    """On DuckDB the run empties dlt's staging copies once they are merged, before the file
    is written at the end of the load: the copies never take room in it."""
    account.sync(account.pipeline())
    assert "contact_imports" in tables_of(account, "resend_dlt_staging")
    for table in ("contact_imports", "contact_import_status_history"):
        rows = account.query(
            f"SELECT count(*) FROM {{dataset}}.{table}", dataset="resend_dlt_staging"
        )
        assert rows == [(0,)]
    assert account.differences() == []
