"""A load that failed for a cause the run can put right is put right and loaded once more, the
run's own load and a package an interrupted run left alike (`resend_imports.load_again`): a
cause that persists must not fail every later run."""

from typing import Any, List

from resend_imports import resend_source
from resend_imports_pipelines.run.pipeline import duckdb_destination, make_pipeline

from .conftest import API_KEY, Account, run_cli

# 8 MB: enough for a run's reads of a table of a few thousand imports, not for loading 3,000
TIGHT = '{"memory_limit": "8MB", "threads": 1, "preserve_insertion_order": false}'
RAISED = "DuckDB ran out of memory while loading (memory_limit 8MB): loading again with 16MB"


def memory_warnings(stderr: str) -> List[str]:
    return [line for line in stderr.splitlines() if "DuckDB ran out of memory" in line]


def test_a_pending_package_that_needs_more_memory_loads_at_the_next_run(make_account: Any) -> None:
    """A run killed after extracting leaves its package pending; the next run loads it before
    it syncs (`pending.py`) with the memory its own load would get: with only the configured
    limit, every later run failed on it, before listing anything."""
    account: Account = make_account(imports=100)
    assert run_cli(account, "sync").returncode == 0
    account.store.advance(new=3000, seconds=600)
    killed = make_pipeline(  # the command's pipeline, in the command's working folder
        duckdb_destination(account.duckdb_path),
        pipelines_dir=str(account.workdir / "dlt" / "pipelines"),
    )
    killed.extract(resend_source(api_key=API_KEY, base_url=account.url))
    assert killed.has_pending_data
    result = run_cli(
        account, "sync", env={"DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG": TIGHT}
    )
    assert result.returncode == 0, result.stderr
    assert "loading data left by an interrupted run before syncing" in result.stderr
    warnings = memory_warnings(result.stderr)
    assert len(warnings) == 1, result.stderr
    assert RAISED in warnings[0]
    assert account.differences() == []
