"""The source the dlt way: `dlt init resend_imports duckdb --location <a clone>` in an empty
folder, then the generated pipeline script run against the bundled simulator; offline."""

import os
import subprocess
import sys
from pathlib import Path

import dlt

from pipelines.resend_imports import make_pipeline
from pipelines.simulator import ImportStore, RunningSimulator, Simulator
from pipelines.verify import differences

REPO = Path(__file__).resolve().parents[1]
DLT = str(Path(sys.executable).with_name("dlt"))


def test_dlt_init_brings_the_source_into_an_empty_project(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", "--no-local", str(REPO), str(clone)], check=True)
    project = tmp_path / "project"
    project.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RESEND_", "SOURCES__"))}
    env.pop("PYTHONPATH", None)
    env["RUNTIME__DLTHUB_TELEMETRY"] = "false"
    init = subprocess.run(
        [DLT, "init", "resend_imports", "duckdb", "--location", str(clone)],
        cwd=project,
        env=env,
        input="y\n",
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert init.returncode == 0, init.stdout + init.stderr
    assert (project / "resend_imports" / "__init__.py").exists()
    assert (project / "resend_imports_pipeline.py").exists()
    assert not (project / "resend").exists()  # nothing shadows the official `resend` SDK
    assert not (project / "pipelines").exists()  # the source stands alone

    store = ImportStore(700, seed=3, stuck=1)
    simulator = Simulator(store, api_keys=("re_init_key",))
    with RunningSimulator(simulator) as running:
        script_env = {
            **env,
            "RESEND_API_KEY": "re_init_key",
            "RESEND_API_URL": running.url,
            "DLT_DATA_DIR": str(tmp_path / "dlt"),
        }
        for run_number in range(2):
            if run_number:
                store.advance(new=25, seconds=600)  # new imports, open ones progress
            run = subprocess.run(
                [sys.executable, "resend_imports_pipeline.py"],
                cwd=project,
                env=script_env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert run.returncode == 0, run.stdout + run.stderr
    checker = make_pipeline(
        dlt.destinations.duckdb(str(project / "resend_imports.duckdb")),
        pipeline_name="init_check",
        pipelines_dir=str(tmp_path / "check"),
    )
    assert differences(checker, store.truth()) == []
