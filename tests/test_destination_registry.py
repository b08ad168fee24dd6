"""The registry of destination kinds (`resend_imports_pipelines.destinations`): a destination's
module, and the libraries it needs, are imported only when a run uses that destination."""

import json
import subprocess
import sys

from resend_imports_pipelines.destinations import DestinationKind, kind_of

from .conftest import Account, cli_environment

OTHER_DRIVERS = ("deltalake", "pyiceberg", "psycopg2")
# a sync as the command runs it, then which of the other destinations' drivers it loaded
SYNC_THEN_LOADED = f"""
import json, sys
from resend_imports_pipelines.cli.main import main
code = main(["sync"])
print(json.dumps([name for name in {OTHER_DRIVERS!r} if name in sys.modules]))
sys.exit(code)
"""


def test_a_duckdb_sync_loads_no_other_destinations_driver(account: Account) -> None:
    """deltalake and pyiceberg alone cost a DuckDB run about 27 MiB and their import time."""
    result = subprocess.run(
        [sys.executable, "-c", SYNC_THEN_LOADED],
        env=cli_environment(account),
        cwd=account.workdir,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == []
    assert account.differences() == []


def test_a_destination_kind_is_its_module_s_loaded_on_first_use() -> None:
    assert kind_of("filesystem").name == "filesystem"
    assert kind_of("duckdb").name == "duckdb"
    assert type(kind_of("bigquery")) is DestinationKind  # dlt alone
