"""Fifty scheduled runs while a quarter of all requests fail; the table is right after each."""

import random
from typing import Any, Dict

import pytest

from resend_imports_pipelines.simulator import FaultPlan

from ..conftest import Account

pytestmark = pytest.mark.reliability

SOAK_FAULTS = ("500", "502_html", "503", "reset", "truncated", "html_200", "429")


def test_fifty_runs_under_faults_equal_truth_after_every_run(
    make_account: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    account: Account = make_account(imports=800, seed=50, stuck=4)
    account.simulator.faults = FaultPlan(
        rate=0.25, kinds=SOAK_FAULTS, retry_after=0, burst=3, seed=2026
    )
    rng = random.Random(50)
    pipeline = account.pipeline()
    totals: Dict[str, int] = dict.fromkeys(
        ("runs", "requests", "faults", "retries", "rows_checked", "new", "updated"), 0
    )
    for run in range(50):
        if run:
            account.store.advance(new=rng.choice([0, 3, 12, 40, 150]), seconds=600)
        summary = account.sync(pipeline, page_size=25, max_attempts=12)
        assert account.differences() == [], f"run {run}"
        stats = account.simulator.stats()
        assert summary.retries == stats.get("faults", 0), f"run {run}: one retry per fault"
        totals["runs"] += 1
        totals["requests"] += stats["total"]
        totals["faults"] += stats.get("faults", 0)
        totals["retries"] += summary.retries
        totals["rows_checked"] += len(account.store)
        totals["new"] += summary.new
        totals["updated"] += summary.updated
    assert totals["faults"] / totals["requests"] > 0.2
    with capsys.disabled():
        print("\nsoak totals: " + ", ".join(f"{k} {v}" for k, v in totals.items()))
