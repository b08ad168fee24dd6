"""SIGKILL a sync at random points; the next run always completes and the table equals truth."""

import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from ..conftest import COMMAND, Account, cli_environment, run_cli

pytestmark = pytest.mark.reliability

KILLS = 22  # trials in which the process was really killed
MAX_TRIALS = 40


def phase_left_behind(pipeline_dir: Path) -> str:
    """Where the killed run was, judged by the load packages it left in dlt's working dir."""
    if any((pipeline_dir / "load" / "normalized").glob("*")):
        return "load"
    if any((pipeline_dir / "normalize" / "extracted").glob("*")):
        return "normalize"
    return "extract (paging)"


def test_sigkill_at_random_points_never_loses_or_duplicates_rows(
    make_account: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    account: Account = make_account(imports=6000, seed=20, stuck=3)
    started = time.monotonic()
    first = run_cli(account, "sync", "--full-refresh")
    full_run_seconds = time.monotonic() - started  # start-up, paging, normalize, load
    assert first.returncode == 0, first.stderr
    rng = random.Random(20)
    phases: Counter[str] = Counter()
    pipeline_dir = account.workdir / "dlt" / "pipelines" / "resend_imports"
    trial = 0
    while trial - phases["finished before the kill"] < KILLS and trial < MAX_TRIALS:
        account.store.advance(new=rng.choice([5, 50, 400]), seconds=600)
        # full refreshes are long enough to be killed while loading; kill them after start-up
        full = trial % 3 != 0
        arguments = ["sync", "--full-refresh"] if full else ["sync"]
        kill_after = full_run_seconds * (rng.uniform(0.5, 0.92) if full else rng.uniform(0.2, 0.8))
        process = subprocess.Popen(
            [COMMAND, *arguments],
            env=cli_environment(account),
            cwd=account.workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(kill_after)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait()
            phases[phase_left_behind(pipeline_dir)] += 1
        else:
            phases["finished before the kill"] += 1
        recovered = run_cli(account, "sync")
        assert recovered.returncode == 0, f"trial {trial}: {recovered.stderr}"
        assert account.differences() == [], f"trial {trial}"
        trial += 1
    killed = trial - phases["finished before the kill"]
    assert killed >= KILLS
    assert len(phases) >= 3, phases  # paging, normalize or load: more than one place was hit
    with capsys.disabled():
        print(f"\nSIGKILL trials: {trial}, killed {killed}; where: {dict(phases)}")
