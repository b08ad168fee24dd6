"""The scheduler helpers the Airflow DAG relies on (the DAG itself: tests/airflow)."""

import logging
from pathlib import Path

import pytest

from pipelines.run.scheduler import (
    destination_for_scheduler,
    duckdb_file_for_scheduler,
    log_failure,
)
from sources.resend_imports.errors import ResendAuthError, ResendConfigError


def test_duckdb_file_defaults_under_airflow_home(tmp_path: Path) -> None:
    path = duckdb_file_for_scheduler({"AIRFLOW_HOME": str(tmp_path)})
    assert path == str(tmp_path.resolve() / "data" / "resend_imports.duckdb")


def test_dlt_variable_wins_when_absolute(tmp_path: Path) -> None:
    chosen = str(tmp_path / "x.duckdb")
    env = {"AIRFLOW_HOME": "/elsewhere", "DESTINATION__DUCKDB__CREDENTIALS": chosen}
    assert duckdb_file_for_scheduler(env) == chosen


def test_relative_duckdb_path_is_refused() -> None:
    with pytest.raises(ResendConfigError, match="is relative"):
        duckdb_file_for_scheduler({"DESTINATION__DUCKDB__CREDENTIALS": "imports.duckdb"})


def test_destination_is_duckdb_with_its_folder_made_or_a_named_warehouse(tmp_path: Path) -> None:
    duckdb = destination_for_scheduler({"AIRFLOW_HOME": str(tmp_path)})
    assert duckdb.destination_name == "duckdb"
    assert (tmp_path / "data").is_dir()
    assert destination_for_scheduler({"RESEND_IMPORTS_DESTINATION": "postgres"}) == "postgres"


def test_failure_callback_logs_one_line(caplog: pytest.LogCaptureFixture) -> None:
    failure = ResendAuthError(403, "invalid_api_key", "API key is invalid", path="/x")
    with caplog.at_level(logging.ERROR, logger="resend_imports"):
        log_failure({"exception": failure})
    assert caplog.messages == [
        "resend-imports: error: Resend rejected the API key (HTTP 403 invalid_api_key: API key"
        " is invalid); the key is read from RESEND_API_KEY, SOURCES__RESEND_IMPORTS__API_KEY"
        " or api_key under [sources.resend_imports] in .dlt/secrets.toml"
    ]
