"""Shared fixtures: simulated Resend accounts on loopback (`serve`, `make_account`, `account`),
the destination they sync into (a real DuckDB file, or the throwaway PostgreSQL server:
`postgres_server`, `postgres`, `destination_name`), and the installed command (`run_cli`)."""

import os
import subprocess
import sys
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import dlt
import pytest

from resend_imports_pipelines.run import SyncSummary, make_pipeline, run_sync
from resend_imports_pipelines.simulator import ImportStore, RunningSimulator, Simulator
from resend_imports_pipelines.simulator.verify import differences

from .throwaway_postgres import ThrowawayPostgres

# The commands the tests start (`resend-imports`, `python -m ...`) run this checkout's code, as
# the tests themselves do (pytest's `pythonpath`), also in a git worktree beside the install.
CHECKOUT = Path(__file__).resolve().parents[1]
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(CHECKOUT / "sources"), str(CHECKOUT / "pipelines")]
    + [part for part in os.environ.get("PYTHONPATH", "").split(os.pathsep) if part]
)

API_KEY = "re_test_Zq8xKEYdoNotLeak_41"
RESTRICTED_KEY = "re_sending_only_key"

# Retries without real waiting: zero backoff, and injected 429s say retry-after 0.
FAST_RETRIES: Dict[str, Any] = {"initial_backoff_seconds": 0.0, "max_backoff_seconds": 0.0}


@dataclass
class Account:
    """A simulated Resend account served on loopback, and the destination it syncs into: a
    DuckDB file, or the throwaway PostgreSQL server's database when `postgres` is set."""

    store: ImportStore
    simulator: Simulator
    url: str
    workdir: Path
    postgres: Optional[ThrowawayPostgres] = None
    api_key: str = API_KEY  # the key this run uses; the simulator may accept others too
    duckdb_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.duckdb_path = self.workdir / "imports.duckdb"

    @property
    def destination_name(self) -> str:
        return "postgres" if self.postgres else "duckdb"

    def destination(self, duckdb_path: Optional[Path] = None) -> Any:
        if self.postgres is not None and duckdb_path is None:
            return dlt.destinations.postgres(credentials=self.postgres.dsn())
        return dlt.destinations.duckdb(str(duckdb_path or self.duckdb_path))

    def pipeline(
        self,
        name: str = "resend_imports",
        duckdb_path: Optional[Path] = None,
        dataset: str = "resend",
    ) -> dlt.Pipeline:
        return make_pipeline(
            self.destination(duckdb_path),
            dataset,
            pipeline_name=name,
            pipelines_dir=str(self.workdir / "pipelines"),
        )

    def query(self, sql: str, *args: Any, dataset: str = "resend") -> List[Tuple[Any, ...]]:
        """Rows of a query on the account's destination; `{dataset}` names the dataset."""
        checker = self.pipeline("truth_check", dataset=dataset)
        with checker.sql_client() as client:
            rows = client.execute_sql(
                sql.format(dataset=client.fully_qualified_dataset_name()), *args
            )
        return [tuple(row) for row in rows or []]

    def sync(self, pipeline: Optional[dlt.Pipeline] = None, **options: Any) -> SyncSummary:
        self.simulator.reset_stats()
        arguments = {"api_key": self.api_key, "base_url": self.url, **FAST_RETRIES, **options}
        return run_sync(pipeline or self.pipeline(), **arguments)

    def differences(self, duckdb_path: Optional[Path] = None, dataset: str = "resend") -> List[str]:
        """How the DuckDB file (by default the account's) differs from the simulator."""
        checker = self.pipeline("truth_check", duckdb_path, dataset)
        return differences(checker, self.store.truth())

    def requests(self, kind: str = "total") -> int:
        return int(self.simulator.stats().get(kind, 0))


COMMAND = str(Path(sys.executable).with_name("resend-imports"))


def cli_environment(
    account: Account,
    workdir: Optional[Path] = None,
    key: Optional[str] = API_KEY,
    env: Optional[Dict[str, str]] = None,
) -> Dict[str, str]:
    """What the external check sets: key, URL, an absolute DuckDB path and DLT_DATA_DIR."""
    workdir = workdir or account.workdir
    environment = {
        **os.environ,
        "RESEND_API_URL": account.url,
        "DESTINATION__DUCKDB__CREDENTIALS": str(workdir / "imports.duckdb"),
        "DLT_DATA_DIR": str(workdir / "dlt"),
        **(env or {}),
    }
    if key is not None:
        environment["RESEND_API_KEY"] = key
    if account.postgres is not None:
        environment.setdefault("DESTINATION__POSTGRES__CREDENTIALS", account.postgres.dsn())
    return environment


def run_cli(
    account: Account, *args: str, env: Optional[Dict[str, str]] = None, key: Optional[str] = API_KEY
) -> subprocess.CompletedProcess[str]:
    """Runs the installed command exactly as the external check does."""
    return subprocess.run(
        [COMMAND, *args],
        env=cli_environment(account, key=key, env=env),
        cwd=account.workdir,
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], text: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, result.stderr
    assert text in errors[0], result.stderr


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No configuration leaks in from the machine running the tests."""
    for name in list(os.environ):
        if name.startswith(("RESEND_", "SOURCES__", "DESTINATION__", "ALERTS__", "RUNTIME__SLACK")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("RUNTIME__DLTHUB_TELEMETRY", "false")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[ThrowawayPostgres]:
    """One throwaway PostgreSQL server for the session (fails, never skips, without one)."""
    server = ThrowawayPostgres().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres(postgres_server: ThrowawayPostgres) -> ThrowawayPostgres:
    """The PostgreSQL server with an empty `analytics` database for this test."""
    postgres_server.start_if_stopped()
    postgres_server.reset_database()
    return postgres_server


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.reliability)])
def destination_name(request: pytest.FixtureRequest) -> str:
    """Runs a test once on a DuckDB file and once on PostgreSQL. The PostgreSQL runs of these
    scenarios are in `make reliability` (CI runs both suites): `make test` stays within
    minutes, with the tests written for PostgreSQL itself (faults, locks, views)."""
    name: str = request.param
    return name


Serve = Callable[..., Tuple[Simulator, str]]


@pytest.fixture
def serve() -> Iterator[Serve]:
    """Serves simulated accounts on loopback: `serve(store, **simulator_options)` gives the
    simulator and its URL; every server stops with the test."""
    with ExitStack() as stack:

        def start(store: ImportStore, **options: Any) -> Tuple[Simulator, str]:
            options.setdefault("api_keys", (API_KEY,))
            simulator = Simulator(store, **options)
            return simulator, stack.enter_context(RunningSimulator(simulator)).url

        yield start


@pytest.fixture
def make_account(tmp_path: Path, request: pytest.FixtureRequest, serve: Serve) -> Any:
    """Factory of simulated accounts (each on a DuckDB file). On PostgreSQL when the test asks
    for `destination_name` and it is `postgres`, or passes `destination`."""
    default = (
        request.getfixturevalue("destination_name")
        if "destination_name" in request.fixturenames
        else "duckdb"
    )

    def make(
        imports: int = 250,
        seed: int = 1,
        rate_limit: Optional[int] = None,
        destination: Optional[str] = None,
        api_keys: Tuple[str, ...] = (API_KEY,),
        **store_options: Any,
    ) -> Account:
        store = ImportStore(imports, seed=seed, **store_options)
        simulator, url = serve(
            store, api_keys=api_keys, restricted_keys=(RESTRICTED_KEY,), rate_limit=rate_limit
        )
        workdir = tmp_path / f"account{seed}"
        workdir.mkdir(exist_ok=True)
        server = None
        if (destination or default) == "postgres":
            server = request.getfixturevalue("postgres")
        return Account(store, simulator, url, workdir, server, api_keys[0])

    return make


@pytest.fixture
def account(make_account: Any) -> Account:
    account: Account = make_account()
    return account
