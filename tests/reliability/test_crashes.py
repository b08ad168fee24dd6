"""SIGKILL a sync at chosen points; the next run always completes and the table equals truth."""

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

KILLS = 22  # trials in which the process was really killed
MAX_TRIALS = 40
TARGETS = ("extract (paging)", "normalize", "load")
POLL_SECONDS = 0.001


def phase_left_behind(pipeline_dir: Path) -> str:
    """Where the killed run was, judged by the load packages it left in dlt's working dir."""
    if any((pipeline_dir / "load" / "normalized").glob("*")):
        return "load"
    if any((pipeline_dir / "normalize" / "extracted").glob("*")):
        return "normalize"
    return "extract (paging)"


def kill_condition(
    target: str, account: Account, pipeline_dir: Path, rng: random.Random
) -> Callable[[], bool]:
    """When to kill a run aimed at `target`: watched, not timed, so slow or fast machines agree.

    Paging: after a random number of list requests. Normalize: as soon as an extracted package
    exists. Load: a random moment after a normalized package is handed to the loader.
    """
    if target == "extract (paging)":
        pages = rng.randint(2, 40)
        return lambda: account.requests("list") >= pages
    if target == "normalize":
        return lambda: any((pipeline_dir / "normalize" / "extracted").glob("*"))
    delay = rng.uniform(0.0, 0.2)
    loading_since: list[float] = []

    def in_load() -> bool:
        if not loading_since and any((pipeline_dir / "load" / "normalized").glob("*")):
            loading_since.append(time.monotonic())
        return bool(loading_since) and time.monotonic() - loading_since[0] >= delay

    return in_load


def test_sigkill_at_chosen_points_never_loses_or_duplicates_rows(
    make_account: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    account: Account = make_account(imports=6000, seed=20, stuck=3)
    first = run_cli(account, "sync", "--full-refresh")
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
            [COMMAND, "sync", "--full-refresh"],
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
        recovered = run_cli(account, "sync")
        assert recovered.returncode == 0, f"trial {trial}: {recovered.stderr}"
        assert account.differences() == [], f"trial {trial}"
        trial += 1
    killed = trial - phases["finished before the kill"]
    assert killed >= KILLS
    assert all(phases[target] for target in TARGETS), phases  # every phase was hit
    with capsys.disabled():
        print(f"\nSIGKILL trials: {trial}, killed {killed}; where: {dict(phases)}")
