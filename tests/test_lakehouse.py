"""Delta and Iceberg tables on a local bucket (dlt's filesystem destination, `--table-format`):
after every run the table read by the format's own reader (`deltalake`, `pyiceberg`, never
this connector) holds one row per import, equal to the API; one writer per bucket and
dataset; the state lives in the bucket with the data."""

import fcntl
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Dict, List

import dlt
import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable
from pyiceberg.table import StaticTable

from resend_imports_pipelines.run import make_pipeline
from resend_imports_pipelines.simulator.verify import COMPARED, differences_of, records_of

from .conftest import COMMAND, Account, assert_one_line_error, cli_environment, run_cli

EXIT_LOCKED = 75
FORMATS = ["delta", pytest.param("iceberg", marks=pytest.mark.reliability)]


def bucket_of(account: Account) -> Path:
    return account.workdir / "bucket"


def lake_env(account: Account, **more: str) -> Dict[str, str]:
    return {"DESTINATION__FILESYSTEM__BUCKET_URL": bucket_of(account).as_uri(), **more}


def lake_sync(
    account: Account, table_format: str, *args: str, env: Any = None
) -> subprocess.CompletedProcess[str]:
    return run_cli(
        account,
        "sync",
        "--destination",
        "filesystem",
        "--table-format",
        table_format,
        *args,
        env={**lake_env(account), **(env or {})},
    )


def table_rows(account: Account, table_format: str, table: str = "contact_imports") -> Any:
    """The committed rows as the format's own reader sees them (an Arrow table)."""
    location = bucket_of(account) / "resend" / table
    if table_format == "delta":
        return DeltaTable(str(location)).to_pyarrow_table()
    metadata = sorted((location / "metadata").glob("*.metadata.json"))[-1]
    return StaticTable.from_metadata(str(metadata)).scan().to_arrow()


def lake_differences(account: Account, table_format: str) -> List[str]:
    """How the table differs from the simulator's truth (duplicates included)."""
    rows = table_rows(account, table_format).to_pylist()
    compared = [(r["id"], r["deleted_at"] is not None, *(r[c] for c in COMPARED)) for r in rows]
    return differences_of(records_of(compared), account.store.truth())


def synced(account: Account, table_format: str, *args: str) -> None:
    result = lake_sync(account, table_format, *args)
    assert result.returncode == 0, result.stderr
    assert lake_differences(account, table_format) == []


@pytest.mark.parametrize("table_format", FORMATS)
def test_every_run_leaves_one_row_per_import_equal_to_the_api(
    make_account: Any, table_format: str
) -> None:
    account = make_account(imports=300, stuck=2)
    synced(account, table_format)  # first run: every import
    again = lake_sync(account, table_format)
    assert "bucket" in again.stdout  # where it went, for people
    assert "WARNING" not in again.stderr, again.stderr  # nothing to act on in a normal run
    account.store.advance(new=40, seconds=600)  # new ones, open ones finishing
    synced(account, table_format)
    deep = [item["id"] for item in account.store.truth()[-3:]]
    for import_id in deep:
        account.store.delete(import_id)
    synced(account, table_format, "--full-refresh")  # deletions found by a complete listing
    rows = table_rows(account, table_format)
    deleted = rows.filter(pc.is_valid(rows["deleted_at"]))
    assert sorted(deleted["id"].to_pylist()) == sorted(deep)
    history = table_rows(account, table_format, "contact_import_status_history")
    assert {"deleted"} <= set(history["status"].to_pylist())


def test_two_runs_on_one_bucket_and_dataset_exclude_each_other(make_account: Any) -> None:
    account = make_account(imports=50)
    bucket = bucket_of(account)
    bucket.mkdir()
    with open(bucket / "resend.resend_imports.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = lake_sync(account, "delta", env={"DLT_DATA_DIR": str(account.workdir / "b")})
    assert result.returncode == EXIT_LOCKED, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (bucket / "resend" / "contact_imports").exists()
    synced(account, "delta")  # released: the next run goes through


@pytest.mark.reliability
@pytest.mark.parametrize("table_format", ["delta", "iceberg"])
def test_a_wiped_working_folder_continues_from_the_bucket(
    make_account: Any, table_format: str, tmp_path: Path
) -> None:
    account = make_account(imports=400, stuck=2)
    synced(account, table_format)
    account.store.advance(new=30, seconds=600)
    fresh = {"DLT_DATA_DIR": str(tmp_path / "wiped")}
    result = lake_sync(account, table_format, env=fresh)
    assert result.returncode == 0, result.stderr
    assert "first run" not in result.stdout and "incremental" in result.stdout, result.stdout
    assert lake_differences(account, table_format) == []


@pytest.mark.parametrize("table_format", FORMATS)
def test_a_bucket_restored_to_an_older_copy_is_brought_up_to_date(
    make_account: Any, table_format: str
) -> None:
    """As a restored DuckDB backup: the state in the bucket wins over the newer local copy."""
    account = make_account(imports=400, stuck=2)
    synced(account, table_format)
    bucket, copy = bucket_of(account), account.workdir / "bucket-copy"
    shutil.copytree(bucket, copy)
    account.store.advance(new=100, seconds=600)
    synced(account, table_format)
    shutil.rmtree(bucket)
    shutil.copytree(copy, bucket)  # the state in DLT_DATA_DIR is now newer than the bucket's
    account.store.advance(new=10, seconds=600)
    result = lake_sync(account, table_format)
    assert result.returncode == 0, result.stderr
    assert "differs from the local copy (a restored backup" in result.stderr
    assert "(incremental run)" in result.stdout and "first run" not in result.stdout
    assert lake_differences(account, table_format) == []
    keys = table_rows(account, table_format, "contact_import_status_history")["observation_key"]
    assert len(keys) == len(set(keys.to_pylist()))  # insert-only: nothing observed twice


def test_a_dataset_folder_left_unmarked_by_a_kill_is_created_again(make_account: Any) -> None:
    """dlt creates the dataset's folder, then its `init` marker; a kill in between left a
    folder that made every later run fail (FileExistsError)."""
    account = make_account(imports=200)
    (bucket_of(account) / "resend").mkdir(parents=True)
    result = lake_sync(account, "delta")
    assert result.returncode == 0, result.stderr
    assert "removing the empty dataset folder" in result.stderr
    assert lake_differences(account, "delta") == []


def test_a_dataset_folder_holding_other_files_is_refused_and_kept(make_account: Any) -> None:
    account = make_account(imports=200)
    stranger = bucket_of(account) / "resend" / "notes.txt"
    stranger.parent.mkdir(parents=True)
    stranger.write_text("not dlt's")
    result = lake_sync(account, "delta")
    assert_one_line_error(result, "holds files but is not a dlt dataset")
    assert result.returncode == 1
    assert stranger.read_text() == "not dlt's"


def test_a_dlt_dataset_that_lost_its_init_file_is_refused_and_kept(make_account: Any) -> None:
    """Told to restore the marker, not to move the folder away (its state and history)."""
    account = make_account(imports=100)
    synced(account, "delta")
    (bucket_of(account) / "resend" / "init").unlink()
    result = lake_sync(account, "delta")
    assert_one_line_error(result, "holds a dlt dataset whose `init` file is missing")
    assert (bucket_of(account) / "resend" / "_dlt_loads").is_dir()


@pytest.mark.reliability
@pytest.mark.parametrize("table_format", ["delta", "iceberg"])
def test_a_run_killed_mid_load_is_healed_by_the_next(make_account: Any, table_format: str) -> None:
    account = make_account(imports=3000, stuck=2)
    environment = cli_environment(account, env=lake_env(account))
    command = [COMMAND, "sync", "--destination", "filesystem", "--table-format", table_format]
    for delay in (1.0, 2.5):
        process = subprocess.Popen(
            command,
            env=environment,
            cwd=account.workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(delay)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        account.store.advance(new=20, seconds=600)
    synced(account, table_format)


@pytest.mark.reliability
def test_report_on_the_lakehouse_shows_the_figures_of_duckdb(make_account: Any) -> None:
    account = make_account(imports=300, stuck=2)
    synced(account, "delta")
    into_duckdb = run_cli(account, "sync")
    assert into_duckdb.returncode == 0, into_duckdb.stderr
    lake_report = run_cli(
        account, "report", "--destination", "filesystem", "--format", "json", env=lake_env(account)
    )
    assert lake_report.returncode == 0, lake_report.stderr
    duckdb_report = run_cli(account, "report", "--format", "json")
    lake, duckdb = json.loads(lake_report.stdout), json.loads(duckdb_report.stdout)
    assert lake["daily"] and lake["worst_imports"]
    for part in ("daily", "worst_imports", "deleted"):
        assert lake[part] == duckdb[part], part
    assert len(lake["alerts"]) == len(duckdb["alerts"])
    elsewhere = {"DLT_DATA_DIR": str(account.workdir / "elsewhere"), **lake_env(account)}
    again = run_cli(
        account, "report", "--destination", "filesystem", "--format", "json", env=elsewhere
    )
    assert again.returncode == 0, again.stderr  # a working folder that never synced
    assert json.loads(again.stdout)["daily"] == lake["daily"]


@pytest.mark.reliability
def test_a_delta_table_stays_compact_over_fifty_runs(make_account: Any) -> None:
    account = make_account(imports=60, stuck=3)
    pipeline = make_pipeline(
        dlt.destinations.filesystem(bucket_of(account).as_uri()),
        pipelines_dir=str(account.workdir / "pipelines"),
    )
    account.sync(pipeline, table_format="delta")
    dataset = bucket_of(account) / "resend"
    tables = ["contact_imports", "contact_import_status_history"]  # merged; insert-only
    first = {name: len(DeltaTable(str(dataset / name)).file_uris()) for name in tables}
    for _ in range(50):
        account.store.advance(new=2, seconds=600)
        account.sync(pipeline, table_format="delta")
    for name in tables:
        table = DeltaTable(str(dataset / name))
        assert len(table.file_uris()) <= 2 * first[name], name
    history = DeltaTable(str(dataset / "contact_import_status_history")).history()
    assert any(entry["operation"] == "OPTIMIZE" for entry in history)  # a file a run before
    assert lake_differences(account, "delta") == []
