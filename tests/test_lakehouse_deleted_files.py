"""Files a person deletes from a local bucket's dataset (Delta and Iceberg on dlt's filesystem
destination): a table's folder is created again by the next run, nothing else lost; a table
that lists a data file the bucket no longer holds stops every run in one line, which says
what to do, and doing it heals. Tables read back by `deltalake` and `pyiceberg`."""

import shutil
from typing import Any

import pytest

from .conftest import assert_one_line_error
from .test_lakehouse import bucket_of, lake_differences, lake_sync, synced, table_rows

HISTORY = "contact_import_status_history"
ALERTS = "contact_import_alerts"


def warnings_of(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "WARNING" in line]


@pytest.mark.parametrize(
    "folder", [HISTORY, ALERTS, "_dlt_loads", "_dlt_pipeline_state", "_dlt_version"]
)
def test_a_deleted_table_folder_is_created_again_by_the_next_run(
    make_account: Any, folder: str
) -> None:
    account = make_account(imports=150, stuck=3)
    synced(account, "delta")
    shutil.rmtree(bucket_of(account) / "resend" / folder)
    result = lake_sync(account, "delta")  # nothing changed: a table is written empty
    assert result.returncode == 0, result.stderr
    missing = [line for line in warnings_of(result.stderr) if f"{folder} is missing" in line]
    assert len(missing) == 1 and "created again" in missing[0], result.stderr
    assert lake_differences(account, "delta") == []
    if not folder.startswith("_dlt"):
        assert table_rows(account, "delta", folder).num_rows == 0
    account.store.advance(new=20, seconds=600)
    again = lake_sync(account, "delta")
    assert again.returncode == 0, again.stderr
    assert "is missing" not in again.stderr, again.stderr
    assert "(incremental run)" in again.stdout, again.stdout
    assert lake_differences(account, "delta") == []
    assert table_rows(account, "delta", HISTORY).num_rows > 0


@pytest.mark.reliability
def test_a_deleted_iceberg_history_folder_is_created_again(make_account: Any) -> None:
    account = make_account(imports=150, stuck=3)
    synced(account, "iceberg")
    shutil.rmtree(bucket_of(account) / "resend" / HISTORY)
    account.store.advance(new=20, seconds=600)
    result = lake_sync(account, "iceberg")
    assert result.returncode == 0, result.stderr
    assert len(warnings_of(result.stderr)) == 1, result.stderr
    assert lake_differences(account, "iceberg") == []
    assert table_rows(account, "iceberg", HISTORY).num_rows > 0


@pytest.mark.parametrize(
    "table_format, table, then",
    [
        ("delta", "contact_imports", "lists every import into it again"),
        ("delta", HISTORY, "creates it again, empty (the rows it held are then gone)"),
        pytest.param(
            "iceberg",
            "contact_imports",
            "lists every import into it again",
            marks=pytest.mark.reliability,
        ),
    ],
)
def test_a_table_missing_a_data_file_stops_each_run_in_one_line_until_its_folder_is_removed(
    make_account: Any, table_format: str, table: str, then: str
) -> None:
    account = make_account(imports=150, stuck=3)
    synced(account, table_format)
    folder = bucket_of(account) / "resend" / table
    next(folder.rglob("*.parquet")).unlink()
    account.store.advance(new=20, seconds=600)
    for args in ([], ["--full-refresh"]):
        result = lake_sync(account, table_format, *args)
        assert_one_line_error(
            result,
            f"the {table_format.capitalize()} table resend.{table} cannot be read: a file it"
            " lists is missing from the bucket",
        )
        assert result.returncode == 1
        assert f"remove the table's folder {folder}: the next run creates it" in result.stderr
        assert then in result.stderr
    shutil.rmtree(folder)  # as the line says
    synced(account, table_format)
    assert table_rows(account, table_format, HISTORY).num_rows > 0


def test_a_file_in_place_of_a_dlt_folder_is_named_in_one_line_as_the_buckets(
    make_account: Any,
) -> None:
    """Not blamed on DLT_DATA_DIR, which does not move the bucket; removed, the run heals."""
    account = make_account(imports=100)
    synced(account, "delta")
    loads = bucket_of(account) / "resend" / "_dlt_loads"
    shutil.rmtree(loads)
    loads.write_text("not a folder")
    result = lake_sync(account, "delta")
    assert_one_line_error(result, f"cannot write {loads}/")
    assert "outside dlt's working folder" in result.stderr
    assert "DLT_DATA_DIR" not in result.stderr
    assert result.returncode == 1
    loads.unlink()
    synced(account, "delta")
