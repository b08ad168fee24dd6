"""The DAG on a real Airflow 3: `airflow dags test`, twice, with imports changing in between.

Runs in .venv-airflow (`make airflow-check`), exactly as the external check drives it: an
empty AIRFLOW_HOME, `airflow db migrate`, the DAG found through AIRFLOW__CORE__DAGS_FOLDER,
and dlt's own DESTINATION__DUCKDB__CREDENTIALS naming the file.
"""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Iterator

import duckdb
import pytest

from resend_imports_pipelines.simulator import FaultPlan, ImportStore, Simulator
from resend_imports_pipelines.simulator.verify import differences

from ..conftest import API_KEY, Account
from ..throwaway_postgres import ThrowawayPostgres

pytestmark = pytest.mark.airflow

AIRFLOW = str(Path(sys.executable).with_name("airflow"))
CHECKOUT = Path(__file__).resolve().parents[2]
DAGS_FOLDER = CHECKOUT / "pipelines" / "resend_imports_pipelines" / "dags"
DAG_ID = "resend_contact_imports"


@pytest.fixture
def airflow_env(account: Account) -> Iterator[Dict[str, str]]:
    home = account.workdir / "airflow_home"
    home.mkdir()
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "RESEND_API_KEY": API_KEY,
        "RESEND_API_URL": account.url,
        "DESTINATION__DUCKDB__CREDENTIALS": str(account.duckdb_path),
        "RESEND_IMPORTS_DAG_RETRIES": "0",
        "DLT_DATA_DIR": str(account.workdir / "worker1"),
    }
    migrate = subprocess.run(
        [AIRFLOW, "db", "migrate"], env=env, capture_output=True, text=True, timeout=300
    )
    assert migrate.returncode == 0, migrate.stderr[-2000:]
    yield env


def dags_test(env: Dict[str, str], **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [AIRFLOW, "dags", "test", DAG_ID],
        env={**env, **extra},
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_two_dag_runs_equal_truth_and_the_second_is_incremental(
    account: Account, airflow_env: Dict[str, str]
) -> None:
    first = dags_test(airflow_env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert account.differences() == []
    assert account.requests("list") == -(-len(account.store) // 100)

    account.store.advance(new=30, seconds=600)
    account.simulator.reset_stats()
    # another worker: nothing local, the state comes back from the DuckDB file
    second = dags_test(airflow_env, DLT_DATA_DIR=str(account.workdir / "worker2"))
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert account.differences() == []
    assert account.requests("list") == 1
    assert "incremental run" in second.stdout + second.stderr  # the summary in the task log
    for output in (first, second):
        assert API_KEY not in output.stdout + output.stderr
    with duckdb.connect(str(account.duckdb_path), read_only=True) as con:
        (days,) = con.execute("SELECT count(*) FROM resend.contact_imports_daily").fetchone() or (
            0,
        )
    assert days > 0  # the refresh_views task ran


def test_two_dag_runs_on_postgres_restore_the_state_from_postgres(
    make_account: Any, airflow_env: Dict[str, str], postgres: ThrowawayPostgres
) -> None:
    """The first run finds the database in an Airflow Connection, the second (another worker)
    in dlt's variables: one destination either way."""
    account: Account = make_account(seed=2, destination="postgres")
    env = {**airflow_env, "RESEND_API_URL": account.url}
    first = dags_test(env, AIRFLOW_CONN_RESEND_IMPORTS_DESTINATION=postgres.dsn())
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert account.differences() == []
    account.store.advance(new=30, seconds=600)
    account.simulator.reset_stats()
    second = dags_test(
        env,
        DLT_DATA_DIR=str(account.workdir / "worker2"),
        RESEND_IMPORTS_DESTINATION="postgres",
        DESTINATION__POSTGRES__CREDENTIALS=postgres.dsn(),
    )
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert account.differences() == []
    assert account.requests("list") == 1  # the state came back from PostgreSQL
    for output in (first, second):
        assert "Loader-pw-doNotLeak-7" not in output.stdout + output.stderr


def test_a_transient_fault_is_absorbed_inside_the_task(
    account: Account, airflow_env: Dict[str, str]
) -> None:
    account.simulator.faults = FaultPlan(queue=["503", "reset", "502_html"])
    run = dags_test(airflow_env, SOURCES__RESEND_IMPORTS__INITIAL_BACKOFF_SECONDS="0")
    assert run.returncode == 0, run.stdout[-3000:]
    assert account.differences() == []
    assert "retrying GET /contacts/imports" in run.stdout + run.stderr


def test_a_rejected_key_fails_the_task_with_the_one_line_error(
    account: Account, airflow_env: Dict[str, str]
) -> None:
    run = dags_test(airflow_env, RESEND_API_KEY="re_revoked_key")
    output = run.stdout + run.stderr
    assert run.returncode != 0 or "failed" in output.lower()
    assert "resend-imports: error: Resend rejected the API key (HTTP 403 invalid_api_key" in output
    assert account.requests() == 1
    assert "re_revoked_key" not in output


def test_a_relative_duckdb_path_is_refused(account: Account, airflow_env: Dict[str, Any]) -> None:
    run = dags_test(airflow_env, DESTINATION__DUCKDB__CREDENTIALS="imports.duckdb")
    output = run.stdout + run.stderr
    assert "is relative: under Airflow each task runs in a temporary folder" in output
    assert account.requests() == 0


def test_a_slack_outage_fails_only_the_delivery_task_and_nothing_is_sent_twice(
    make_account: Any, airflow_env: Dict[str, str]
) -> None:
    from datetime import UTC, datetime, timedelta

    from ..alert_receiver import AlertReceiver

    start = datetime.now(UTC) - timedelta(hours=4)
    account: Account = make_account(imports=300, seed=4, stuck=4, history_end=start)
    receiver = AlertReceiver()
    receiver.down()
    env = {
        **airflow_env,
        "RESEND_API_URL": account.url,
        "DESTINATION__DUCKDB__CREDENTIALS": str(account.duckdb_path),
        "RUNTIME__SLACK_INCOMING_HOOK": receiver.url("/slack/T0/B0/dagSecret"),
        "SOURCES__RESEND_IMPORTS__ALERTS__MAX_ATTEMPTS": "2",
        "SOURCES__RESEND_IMPORTS__ALERTS__INITIAL_BACKOFF_SECONDS": "0.05",
    }
    down = dags_test(env)
    output = down.stdout + down.stderr
    assert "dagSecret" not in output
    assert account.differences() == []  # the load task succeeded
    assert "wait for the next run" in output  # the delivery task failed, in one line
    with duckdb.connect(str(account.duckdb_path), read_only=True) as con:
        (raised,) = con.execute("SELECT count(*) FROM resend.contact_import_alerts").fetchall()[0]
    assert raised > 0 and receiver.received == []
    receiver.up()
    account.store.advance(new=10, seconds=600)
    up = dags_test(env)
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
    with duckdb.connect(str(account.duckdb_path), read_only=True) as con:
        rows = con.execute("SELECT alert_key FROM resend.contact_import_alerts").fetchall()
        keys = [key for (key,) in rows]
        (waiting,) = con.execute(
            "SELECT count(*) FROM resend.contact_import_alerts WHERE delivered_at IS NULL"
        ).fetchall()[0]
    assert waiting == 0
    assert sorted(receiver.slack_keys()) == sorted(keys)  # everything, once
    receiver.down()


def test_views_that_cannot_be_rebuilt_fail_only_their_task_and_the_next_run_rebuilds_them(
    account: Account, airflow_env: Dict[str, str]
) -> None:
    with duckdb.connect(str(account.duckdb_path)) as con:  # a table took the view's name
        con.execute("CREATE SCHEMA resend; CREATE TABLE resend.contact_imports_enriched (x INT)")
    blocked = dags_test(airflow_env)
    output = blocked.stdout + blocked.stderr
    assert "resend-imports: error: the views were not rebuilt (" in output
    assert "; the next run tries again" in output
    assert "nothing is lost" not in output
    assert account.differences() == []  # the sync task loaded

    with duckdb.connect(str(account.duckdb_path)) as con:
        con.execute("DROP TABLE resend.contact_imports_enriched")
    rebuilt = dags_test(airflow_env)
    assert rebuilt.returncode == 0, rebuilt.stdout[-3000:] + rebuilt.stderr[-3000:]
    assert "views: (re)created contact_imports_enriched, contact_imports_daily" in (
        rebuilt.stdout + rebuilt.stderr
    )
    with duckdb.connect(str(account.duckdb_path), read_only=True) as con:
        (days,) = con.execute("SELECT count(*) FROM resend.contact_imports_daily").fetchone() or (
            0,
        )
    assert days > 0


def test_several_accounts_fan_out_over_two_groups_one_writer_at_a_time(
    account: Account, airflow_env: Dict[str, str]
) -> None:
    keys = {"acme": API_KEY, "globex": "re_globex_dag_key", "initech": "re_initech_dag_key"}
    stores = {"acme": account.store}
    for seed, name in enumerate(("globex", "initech"), start=2):
        stores[name] = ImportStore(60 + seed, seed=seed)
        account.simulator.add_account(keys[name], Simulator(stores[name], api_keys=(keys[name],)))
    env = {
        "SOURCES__RESEND_IMPORTS__ACCOUNTS": json.dumps(keys),
        "SOURCES__RESEND_IMPORTS__ACCOUNT_GROUPS": "2",
    }

    run = dags_test(airflow_env, **env)

    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-3000:]
    assert "map_index=1" in output  # two mapped sync instances: [acme, initech], [globex]
    checker = account.pipeline("truth_check")
    for name, store in stores.items():
        assert differences(checker, store.truth(), name) == [], name
    for key in keys.values():
        assert key not in output
