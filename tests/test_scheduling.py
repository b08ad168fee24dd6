"""The scheduler helpers the Airflow DAG relies on (the DAG itself: tests/airflow)."""

import logging
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from resend_imports.errors import ResendAuthError, ResendConfigError
from resend_imports_pipelines.run.scheduler import (
    destination_for_scheduler,
    duckdb_file_for_scheduler,
    log_failure,
)


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


def test_an_airflow_connection_names_a_postgresql_database_or_is_refused_in_one_line() -> None:
    uri = "postgres://loader:Pw-in-Airflow-9@db.internal:5432/analytics"
    destination = destination_for_scheduler(
        {"RESEND_IMPORTS_DESTINATION": "bigquery"}, connection=("postgres", uri)
    )
    assert destination.destination_name == "postgres"
    credentials = destination.config_params["credentials"]
    assert credentials.startswith("postgresql://loader:") and "db.internal:5432" in credentials

    with pytest.raises(ResendConfigError) as refused:
        destination_for_scheduler(connection=("mysql", "mysql://u:Pw-in-Airflow-9@h/db"))
    assert "resend_imports_destination is of type 'mysql'" in str(refused.value)
    assert "Pw-in-Airflow-9" not in str(refused.value)


def test_failure_callback_logs_one_line(caplog: pytest.LogCaptureFixture) -> None:
    failure = ResendAuthError(403, "invalid_api_key", "API key is invalid", path="/x")
    with caplog.at_level(logging.ERROR, logger="resend_imports"):
        log_failure({"exception": failure})
    assert caplog.messages == [
        "resend-imports: error: Resend rejected the API key (HTTP 403 invalid_api_key: API key"
        " is invalid); the key is read from RESEND_API_KEY, SOURCES__RESEND_IMPORTS__API_KEY"
        " or api_key under [sources.resend_imports] in .dlt/secrets.toml"
    ]


def test_the_airflow_extra_admits_every_airflow_3_and_ci_tests_the_pinned_one() -> None:
    """Installing `resend-imports[airflow]` into an existing Airflow 3 keeps that Airflow's
    version; the version CI runs the DAG on is one the range admits."""
    root = Path(__file__).resolve().parent.parent
    project = tomllib.loads((root / "pyproject.toml").read_text())
    (requirement,) = [
        Requirement(r) for r in project["project"]["optional-dependencies"]["airflow"]
    ]
    pinned = next(
        line.split("==")[1].strip()
        for line in (root / "constraints-airflow.txt").read_text().splitlines()
        if line.startswith("apache-airflow==")
    )

    assert requirement.name == "apache-airflow"
    for version in ("3.0.0", "3.1.7", "3.2.0", pinned, "3.99"):
        assert requirement.specifier.contains(version), version
    for version in ("2.10.5", "4.0.0"):
        assert not requirement.specifier.contains(version), version
