"""What an install puts on the path: two import packages with names of their own, so that the
connector sits beside other code (an Airflow project's `pipelines`, a dlt project's
`sources`) without either hiding the other."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from .conftest import COMMAND

CHECKOUT = Path(__file__).resolve().parents[1]
OUR_PACKAGES = {"resend_imports", "resend_imports_pipelines"}
IGNORED = shutil.ignore_patterns("__pycache__", "*.egg-info")


def test_the_wheel_holds_only_the_two_distinctive_packages(tmp_path: Path) -> None:
    project = tmp_path / "project"  # a copy: a build writes its own folders beside the code
    for folder in ("sources", "pipelines"):
        shutil.copytree(CHECKOUT / folder, project / folder, ignore=IGNORED)
    for file in ("pyproject.toml", "README.md"):
        shutil.copy(CHECKOUT / file, project / file)
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    built = subprocess.run(
        [*build, "--disable-pip-version-check", "-w", str(tmp_path), str(project)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names if ".dist-info/" not in name}
    assert top_level == OUR_PACKAGES
    # the command line and the DAG's tasks are in it, not only the source
    assert "resend_imports_pipelines/cli/main.py" in names
    assert "resend_imports_pipelines/dags/resend_imports_dag.py" in names
    assert "resend_imports/__init__.py" in names


def test_the_command_runs_beside_a_project_with_its_own_pipelines_and_sources(
    tmp_path: Path,
) -> None:
    """A project whose own packages come first on the path, as an Airflow dags folder does."""
    for package in ("pipelines", "sources"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text(f"OWNER = 'the project: {package}'\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ["PYTHONPATH"]])}

    help_text = subprocess.run(
        [COMMAND, "sync", "--help"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert help_text.returncode == 0, help_text.stderr
    assert "--full-refresh" in help_text.stdout

    both = subprocess.run(
        [
            sys.executable,
            "-c",
            "import pipelines, sources, resend_imports, resend_imports_pipelines.run\n"
            "print(pipelines.OWNER, sources.OWNER, resend_imports.__file__, sep='|')",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert both.returncode == 0, both.stderr
    theirs_pipelines, theirs_sources, ours = both.stdout.strip().split("|")
    assert (theirs_pipelines, theirs_sources) == ("the project: pipelines", "the project: sources")
    assert Path(ours) == CHECKOUT / "sources" / "resend_imports" / "__init__.py"
