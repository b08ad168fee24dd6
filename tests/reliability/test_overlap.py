"""Cron ticks that overlap: three syncs started 0.15 s apart, four rounds, imports changing in
between. Each sync either syncs (exit 0) or declines in one line with exit 75; after every
round the table equals the API with no duplicate id. On DuckDB and on PostgreSQL."""

import subprocess
import time
from collections import Counter
from typing import Any

import pytest

from ..conftest import COMMAND, Account, cli_environment

pytestmark = pytest.mark.reliability

ROUNDS = 4
SYNCS_PER_ROUND = 3
EXIT_LOCKED = 75


def test_overlapping_syncs_never_corrupt_the_table(
    make_account: Any, destination_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    account: Account = make_account(imports=3000, seed=75, stuck=2)
    outcomes: Counter[str] = Counter()
    for round_number in range(ROUNDS):
        account.store.advance(new=150 * (round_number + 1), seconds=600)
        processes = []
        for _ in range(SYNCS_PER_ROUND):
            processes.append(
                subprocess.Popen(
                    [COMMAND, "sync", "--destination", account.destination_name],
                    env=cli_environment(account),
                    cwd=account.workdir,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
            time.sleep(0.15)
        results = [(p, *p.communicate(timeout=300)) for p in processes]
        for process, stdout, stderr in results:
            assert "Traceback" not in stderr, stderr
            if process.returncode == 0:
                assert stdout.startswith(("synced ", "nothing changed in ")), stdout
                outcomes["synced"] += 1
            else:
                assert process.returncode == EXIT_LOCKED, stderr
                lines = stderr.strip().splitlines()
                assert len(lines) == 1 and "resend-imports: locked: another sync" in lines[0]
                outcomes["declined (75)"] += 1
        assert outcomes["synced"] > round_number, f"round {round_number}: nobody synced"
        assert account.differences() == [], f"round {round_number}"
    assert outcomes["declined (75)"] > 0  # the ticks did overlap
    with capsys.disabled():
        print(f"\noverlap on {account.destination_name}: {dict(outcomes)}")
