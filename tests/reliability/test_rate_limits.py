"""Pacing on `ratelimit-*` avoids 429s; when several syncs share the limit, 429s are absorbed."""

import subprocess
from typing import Any

import pytest

from ..conftest import COMMAND, Account, cli_environment

pytestmark = pytest.mark.reliability


def test_pacing_keeps_a_sync_free_of_429(make_account: Any) -> None:
    account: Account = make_account(imports=250, rate_limit=4)
    summary = account.sync(page_size=10)
    assert summary.requests == 25
    assert account.requests("status_429") == 0
    assert summary.rate_limited == 0 and summary.retries == 0
    assert account.differences() == []


def test_concurrent_syncs_absorb_429_with_retry_after(make_account: Any) -> None:
    account: Account = make_account(imports=300, rate_limit=5)
    workdirs = [account.workdir / f"sync{n}" for n in range(3)]
    processes = []
    for workdir in workdirs:
        workdir.mkdir()
        processes.append(
            subprocess.Popen(
                [COMMAND, "sync"],
                env=cli_environment(
                    account, workdir, env={"SOURCES__RESEND_IMPORTS__PAGE_SIZE": "10"}
                ),
                cwd=workdir,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outputs = [process.communicate(timeout=180) for process in processes]
    assert [p.returncode for p in processes] == [0, 0, 0], outputs
    assert account.requests("status_429") > 0
    assert sum("retrying GET /contacts/imports" in err for _, err in outputs) >= 1
    for workdir in workdirs:
        assert account.differences(workdir / "imports.duckdb") == []
