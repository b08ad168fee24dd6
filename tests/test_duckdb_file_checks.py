"""DuckDB paths a run cannot use, refused in one line before any request, the file untouched:
a file whose catalog name collides with a dataset of the run, and a path that is not a DuckDB
database at all."""

import os
from pathlib import Path
from typing import Dict, List, Tuple

import duckdb
import pytest

from .conftest import Account, assert_one_line_error, run_cli

EXIT_FAILED = 1


def fingerprint(path: Path) -> Tuple[int, bytes, List[str]]:
    """What must not change: mtime, and the bytes of a file or the names in a folder."""
    if path.is_dir():
        return path.stat().st_mtime_ns, b"", sorted(os.listdir(path))
    return path.stat().st_mtime_ns, path.read_bytes(), []


def duckdb_database(path: Path) -> Path:
    """A real DuckDB file with a table in it, as an earlier sync or a user left it."""
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE kept AS SELECT 42 AS answer")
    return path


# file name, extra arguments, extra variables, the collision the error names
COLLISIONS: Dict[str, Tuple[str, List[str], Dict[str, str], str]] = {
    "case": ("Resend.duckdb", [], {}, "is named like the dataset 'resend'"),
    "normalized dataset": (
        "resend_prod.duckdb",
        ["--dataset", "resend-prod"],
        {},
        "is named like the dataset 'resend_prod' (from --dataset resend-prod)",
    ),
    "staging dataset": (
        "resend_dlt_staging.duckdb",
        [],
        {},
        "like the staging dataset 'resend_dlt_staging'",
    ),
    "configured staging layout": (
        "stage_resend.duckdb",
        [],
        {"DESTINATION__DUCKDB__STAGING_DATASET_NAME_LAYOUT": "stage_%s"},
        "like the staging dataset 'stage_resend'",
    ),
    "catalog up to the first dot": ("RESEND.2026.duckdb", [], {}, "like the dataset 'resend'"),
    "built-in catalog": (
        "imports.duckdb",
        ["--dataset", "temp"],
        {},
        "DuckDB's built-in catalog temp is named like the dataset 'temp'",
    ),
}


@pytest.mark.parametrize("case", COLLISIONS, ids=list(COLLISIONS))
def test_a_file_named_like_a_dataset_is_refused_before_any_request(
    account: Account, case: str
) -> None:
    name, arguments, variables, collision = COLLISIONS[case]
    path = account.workdir / name
    env = {"DESTINATION__DUCKDB__CREDENTIALS": str(path), **variables}
    result = run_cli(account, "sync", *arguments, env=env)
    assert result.returncode == EXIT_FAILED
    assert_one_line_error(result, collision)
    assert "pass another --dataset" in result.stderr
    assert account.requests() == 0
    assert not path.exists()  # not even created empty


def test_a_symlink_is_judged_by_the_file_it_points_to(account: Account) -> None:
    """DuckDB names the catalog after the real file, here `Resend`, not after the link."""
    (account.workdir / "data").mkdir()
    link = account.workdir / "imports.duckdb"
    link.symlink_to(account.workdir / "data" / "Resend.duckdb")
    result = run_cli(account, "sync", env={"DESTINATION__DUCKDB__CREDENTIALS": str(link)})
    assert result.returncode == EXIT_FAILED
    assert_one_line_error(result, "data/Resend.duckdb is named like the dataset 'resend'")
    assert account.requests() == 0
    assert not link.exists()  # the link still points to nothing


def test_an_existing_colliding_file_is_left_as_it_is_by_sync_and_report(
    account: Account,
) -> None:
    path = duckdb_database(account.workdir / "Resend.duckdb")
    before = fingerprint(path)
    for command in ("sync", "report"):
        result = run_cli(account, command, env={"DESTINATION__DUCKDB__CREDENTIALS": str(path)})
        assert result.returncode == EXIT_FAILED
        assert_one_line_error(result, f"the DuckDB file {path} is named like the dataset 'resend'")
    assert account.requests() == 0
    assert fingerprint(path) == before


def test_the_staging_name_comes_from_the_destination_config(account: Account) -> None:
    """With another layout, a file named like the default staging dataset is no collision."""
    path = account.workdir / "resend_staging.duckdb"
    env = {
        "DESTINATION__DUCKDB__CREDENTIALS": str(path),
        "DESTINATION__DUCKDB__STAGING_DATASET_NAME_LAYOUT": "stage_%s",
    }
    result = run_cli(account, "sync", env=env)
    assert result.returncode == 0, result.stderr
    assert account.differences(path) == []


def _empty_file(folder: Path) -> Path:
    path = folder / "empty.duckdb"
    path.touch()
    return path


def _text_file(folder: Path) -> Path:
    path = folder / "notes.duckdb"
    path.write_text("id,status\nimp_1,completed\n")
    return path


def _folder(folder: Path) -> Path:
    path = folder / "warehouse.duckdb"
    path.mkdir()
    (path / "readme.txt").write_text("not a database")
    return path


def _almost_duckdb(folder: Path) -> Path:
    """The magic bytes one byte off where DuckDB writes them."""
    path = folder / "shifted.duckdb"
    path.write_bytes(b"\0" * 9 + b"DUCK" + b"\0" * 4083)
    return path


NOT_DATABASES = {
    "empty file": _empty_file,
    "text file": _text_file,
    "folder": _folder,
    "magic bytes misplaced": _almost_duckdb,
}


@pytest.mark.parametrize("kind", NOT_DATABASES, ids=list(NOT_DATABASES))
@pytest.mark.parametrize("command", ["sync", "report"])
def test_a_path_that_is_not_a_duckdb_database_is_refused_and_left_as_it_is(
    account: Account, kind: str, command: str
) -> None:
    path = NOT_DATABASES[kind](account.workdir)
    before = fingerprint(path)
    result = run_cli(account, command, "--duckdb", str(path))
    assert result.returncode == EXIT_FAILED
    assert_one_line_error(result, f"{path} is not a DuckDB database")
    assert account.requests() == 0
    assert fingerprint(path) == before
    assert not path.with_name(path.name + ".wal").exists()
