"""Shared fixtures: a simulated Resend account on loopback and a pipeline on a real DuckDB file."""

import os
import subprocess
import sys
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import dlt
import pytest

from pipelines.resend_imports import SyncSummary, make_pipeline, run_sync
from pipelines.simulator import ImportStore, RunningSimulator, Simulator
from pipelines.verify import differences

API_KEY = "re_test_Zq8xKEYdoNotLeak_41"
RESTRICTED_KEY = "re_sending_only_key"

# Retries without real waiting: zero backoff, and injected 429s say retry-after 0.
FAST_RETRIES: Dict[str, Any] = {"initial_backoff_seconds": 0.0, "max_backoff_seconds": 0.0}


@dataclass
class Account:
    """A simulated Resend account served on loopback, and the DuckDB file it syncs into."""

    store: ImportStore
    simulator: Simulator
    url: str
    workdir: Path
    duckdb_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.duckdb_path = self.workdir / "imports.duckdb"

    def pipeline(
        self,
        name: str = "resend_imports",
        duckdb_path: Optional[Path] = None,
        dataset: str = "resend",
    ) -> dlt.Pipeline:
        return make_pipeline(
            dlt.destinations.duckdb(str(duckdb_path or self.duckdb_path)),
            dataset,
            pipeline_name=name,
            pipelines_dir=str(self.workdir / "pipelines"),
        )

    def sync(self, pipeline: Optional[dlt.Pipeline] = None, **options: Any) -> SyncSummary:
        self.simulator.reset_stats()
        arguments = {"api_key": API_KEY, "base_url": self.url, **FAST_RETRIES, **options}
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
        if name.startswith(("RESEND_", "SOURCES__", "DESTINATION__")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("RUNTIME__DLTHUB_TELEMETRY", "false")


@pytest.fixture
def make_account(tmp_path: Path) -> Iterator[Any]:
    """Factory of simulated accounts; every server stops with the test."""
    with ExitStack() as stack:

        def make(
            imports: int = 250,
            seed: int = 1,
            rate_limit: Optional[int] = None,
            **store_options: Any,
        ) -> Account:
            store = ImportStore(imports, seed=seed, **store_options)
            simulator = Simulator(
                store,
                api_keys=(API_KEY,),
                restricted_keys=(RESTRICTED_KEY,),
                rate_limit=rate_limit,
            )
            running = stack.enter_context(RunningSimulator(simulator))
            workdir = tmp_path / f"account{seed}"
            workdir.mkdir(exist_ok=True)
            return Account(store, simulator, running.url, workdir)

        yield make


@pytest.fixture
def account(make_account: Any) -> Account:
    account: Account = make_account()
    return account
