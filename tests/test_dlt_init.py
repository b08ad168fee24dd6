"""The source the dlt way: `dlt init resend_imports duckdb --location <a clone>` in an empty
folder, then the generated pipeline script run against the bundled simulator; offline. What
the source guarantees comes with it: a load package left by an interrupted run and extracted
against another copy of the table is discarded, not loaded, as with the command line."""

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict

import dlt
import pytest

from resend_imports_pipelines.run import make_pipeline
from resend_imports_pipelines.simulator import ImportStore
from resend_imports_pipelines.simulator.verify import differences

from .conftest import Serve

REPO = Path(__file__).resolve().parents[1]
DLT = str(Path(sys.executable).with_name("dlt"))
KEY = "re_init_key"
# what a run that stopped after extracting leaves: a pending load package
EXTRACT_ONLY = (
    "import dlt\n"
    "from resend_imports import resend_source\n"
    "pipeline = dlt.pipeline(\n"
    "    pipeline_name='resend_imports', destination='duckdb', dataset_name='resend'\n"
    ")\n"
    "pipeline.extract(resend_source())\n"
)
# enough for a run's reads of a table of a few thousand imports, not for loading 3,000
TIGHT_DUCKDB = '{"memory_limit": "8MB", "threads": 1, "preserve_insertion_order": false}'


def _clean_environment() -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RESEND_", "SOURCES__"))}
    env.pop("PYTHONPATH", None)
    env["RUNTIME__DLTHUB_TELEMETRY"] = "false"
    return env


@pytest.fixture(scope="module")
def initialized(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project made by `dlt init` from a clone of this repository, once for the module."""
    folder = tmp_path_factory.mktemp("dlt_init")
    clone = folder / "clone"
    subprocess.run(["git", "clone", "--quiet", "--no-local", str(REPO), str(clone)], check=True)
    project = folder / "project"
    project.mkdir()
    init = subprocess.run(
        [DLT, "init", "resend_imports", "duckdb", "--location", str(clone)],
        cwd=project,
        env=_clean_environment(),
        input="y\n",
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert init.returncode == 0, init.stdout + init.stderr
    return project


@pytest.fixture
def project(initialized: Path, tmp_path: Path) -> Path:
    """A fresh copy of the initialized project for one test."""
    return Path(shutil.copytree(initialized, tmp_path / "project"))


class Project:
    """The project's scripts run as its user runs them, against a simulator on loopback."""

    def __init__(self, folder: Path, url: str, data_dir: Path) -> None:
        self.folder = folder
        self.env = {
            **_clean_environment(),
            "RESEND_API_KEY": KEY,
            "RESEND_API_URL": url,
            "DLT_DATA_DIR": str(data_dir),
        }

    def python(self, *args: str) -> subprocess.CompletedProcess[str]:
        run = subprocess.run(
            [sys.executable, *args],
            cwd=self.folder,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        return run

    def differences(self, store: ImportStore, checks: Path) -> list[str]:
        checker = make_pipeline(
            dlt.destinations.duckdb(str(self.folder / "resend_imports.duckdb")),
            pipeline_name="init_check",
            pipelines_dir=str(checks),
        )
        return differences(checker, store.truth())


@pytest.fixture
def store() -> ImportStore:
    return ImportStore(700, seed=3, stuck=1)


@pytest.fixture
def running(project: Path, store: ImportStore, tmp_path: Path, serve: Serve) -> Project:
    _, url = serve(store, api_keys=(KEY,))
    return Project(project, url, tmp_path / "dlt")


def test_dlt_init_brings_the_source_into_an_empty_project(
    project: Path, running: Project, store: ImportStore, tmp_path: Path
) -> None:
    assert (project / "resend_imports" / "__init__.py").exists()
    assert (project / "resend_imports_pipeline.py").exists()
    assert not (project / "resend").exists()  # nothing shadows the official `resend` SDK
    assert not (project / "pipelines").exists()  # the source stands alone
    for run_number in range(2):
        if run_number:
            store.advance(new=25, seconds=600)  # new imports, open ones progress
        running.python("resend_imports_pipeline.py")
    assert running.differences(store, tmp_path / "check") == []


@pytest.mark.reliability
def test_a_copy_made_by_dlt_init_discards_a_pending_package_of_another_copy(
    project: Path, running: Project, store: ImportStore, tmp_path: Path
) -> None:
    database = project / "resend_imports.duckdb"
    running.python("resend_imports_pipeline.py")
    backup = database.read_bytes()
    store.advance(new=100, seconds=600)
    running.python("resend_imports_pipeline.py")  # the state moves on past the backup's
    store.advance(new=100, seconds=600)
    running.python("-c", EXTRACT_ONLY)  # a run that stopped after extracting
    database.write_bytes(backup)  # the file restored from the backup
    database.with_name(database.name + ".wal").unlink(missing_ok=True)
    healed = running.python("resend_imports_pipeline.py")
    assert "discarding 1 load package(s)" in healed.stderr
    # loaded, that package's state would have skipped the 100 imports after the backup
    assert running.differences(store, tmp_path / "check") == []


def test_a_copy_made_by_dlt_init_loads_a_pending_package_that_needs_more_memory(
    project: Path, tmp_path: Path, serve: Serve
) -> None:
    """The source loads the package an interrupted run left with twice DuckDB's memory limit
    when it runs out of it, in a plain pipeline too (no connection held open around it)."""
    store = ImportStore(100, seed=3)
    _, url = serve(store, api_keys=(KEY,))
    running = Project(project, url, tmp_path / "dlt")
    running.python("resend_imports_pipeline.py")
    store.advance(new=3000, seconds=600)
    running.python("-c", EXTRACT_ONLY)  # a run that stopped after extracting
    running.env["DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG"] = TIGHT_DUCKDB
    healed = running.python("resend_imports_pipeline.py")
    raised = [line for line in healed.stderr.splitlines() if "DuckDB ran out of memory" in line]
    assert len(raised) == 1, healed.stderr
    assert "(memory_limit 8MB): loading again with 16MB" in raised[0]
    assert running.differences(store, tmp_path / "check") == []
