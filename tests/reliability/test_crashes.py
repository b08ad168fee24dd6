"""SIGKILL a sync at chosen phases; the next run always completes, with no manual step, and
the table equals truth. On DuckDB and on PostgreSQL."""

import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import pytest

from ..conftest import COMMAND, Account, cli_environment, run_cli

pytestmark = pytest.mark.reliability

KILLS = 30  # trials in which the process was really killed, per destination
MAX_TRIALS = 48
TARGETS = (
    "extract (paging)",
    "extract commit",
    "normalize",
    "load, before the first job",
    "load, after the first job",
    "state commit",
)
POLL_SECONDS = 0.0005


def _packages(pipeline_dir: Path, folder: str) -> list[Path]:
    return list((pipeline_dir / folder).glob("*"))


def _jobs(pipeline_dir: Path, state: str) -> list[Path]:
    return list((pipeline_dir / "load" / "normalized").glob(f"*/{state}/*"))


def _all_jobs_done(pipeline_dir: Path) -> bool:
    """Every job of the package loaded; dlt is recording the load (`_dlt_loads`, the state
    it carries) and moving the package: the commit of the run."""
    return bool(_jobs(pipeline_dir, "completed_jobs")) and not (
        _jobs(pipeline_dir, "new_jobs") or _jobs(pipeline_dir, "started_jobs")
    )


def phase_left_behind(pipeline_dir: Path) -> str:
    """Where the killed run was, judged by the load packages it left in dlt's working dir."""
    if _all_jobs_done(pipeline_dir):
        return "state commit"
    if _jobs(pipeline_dir, "completed_jobs"):
        return "load, after the first job"
    if _packages(pipeline_dir, "load/normalized"):
        return "load, before the first job"
    if _packages(pipeline_dir, "load/new"):
        return "normalize"
    if _packages(pipeline_dir, "normalize/extracted"):
        return "extract commit"
    return "extract (paging)"


def kill_condition(
    target: str, account: Account, pipeline_dir: Path, rng: random.Random
) -> Callable[[], bool]:
    """When to kill a run aimed at `target`: watched, not timed, so slow or fast machines agree."""
    if target == "extract (paging)":
        pages = rng.randint(2, 40)
        return lambda: account.requests("list") >= pages
    if target == "extract commit":
        return lambda: bool(_packages(pipeline_dir, "normalize/extracted"))
    if target == "normalize":
        return lambda: bool(_packages(pipeline_dir, "load/new"))
    if target == "load, before the first job":
        return lambda: bool(_packages(pipeline_dir, "load/normalized"))
    if target == "load, after the first job":
        return lambda: bool(_jobs(pipeline_dir, "completed_jobs"))
    return lambda: _all_jobs_done(pipeline_dir)


def test_sigkill_at_chosen_phases_never_loses_or_duplicates_rows(
    make_account: Any, destination_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    account: Account = make_account(imports=6000, seed=20, stuck=3)
    sync = ["sync", "--destination", account.destination_name]
    first = run_cli(account, *sync, "--full-refresh")
    assert first.returncode == 0, first.stderr
    rng = random.Random(20)
    phases: Counter[str] = Counter()
    pipeline_dir = account.workdir / "dlt" / "pipelines" / "resend_imports"
    trial = 0
    while trial - phases["finished before the kill"] < KILLS and trial < MAX_TRIALS:
        account.store.advance(new=rng.choice([5, 50, 400]), seconds=600)
        account.simulator.reset_stats()
        should_kill = kill_condition(TARGETS[trial % len(TARGETS)], account, pipeline_dir, rng)
        # full refreshes page and load all 6,000+ imports: long enough to hit every phase
        process = subprocess.Popen(
            [COMMAND, *sync, "--full-refresh"],
            env=cli_environment(account),
            cwd=account.workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        while process.poll() is None and not should_kill():
            time.sleep(POLL_SECONDS)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait()
            phases[phase_left_behind(pipeline_dir)] += 1
        else:
            phases["finished before the kill"] += 1
        recovered = run_cli(account, *sync)
        assert recovered.returncode == 0, f"trial {trial}: {recovered.stderr}"
        assert "Traceback" not in recovered.stderr
        assert account.differences() == [], f"trial {trial}"
        trial += 1
    killed = trial - phases["finished before the kill"]
    assert killed >= KILLS
    # the phases a kill can hit by timing on any machine; the others are reported
    for target in ("extract (paging)", "extract commit", "load, after the first job"):
        assert phases[target], phases
    with capsys.disabled():
        print(
            f"\nSIGKILL on {account.destination_name}: trials {trial}, killed {killed};"
            f" where: {dict(phases)}"
        )
