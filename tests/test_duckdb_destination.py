"""The DuckDB file a sync writes, held open from its checks to the end of its load (see
`DuckDB.held_open`): the run's own connections are cursors on it, and nothing is held when
holding would change what dlt's connections do."""

import json
from typing import Any

import duckdb
import pytest

from .conftest import Account


def test_credentials_with_statements_sync_as_before(
    account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    """dlt runs the credentials' `statements` on every connection it opens: an ATTACH would
    run twice on one open database (DuckDB refuses a file attached twice), so such a run
    holds nothing open, and syncs as it always did."""
    other = account.workdir / "other.duckdb"
    duckdb.connect(str(other)).close()
    statements = [f"ATTACH '{other}' AS other (READ_ONLY)"]
    monkeypatch.setenv("DESTINATION__DUCKDB__CREDENTIALS__STATEMENTS", json.dumps(statements))
    account.sync(account.pipeline())
    account.store.advance(new=5, seconds=600)
    assert account.sync(account.pipeline()).new == 5
    assert account.differences() == []


def test_the_file_is_free_once_the_sync_returns(account: Account) -> None:
    """The held connection is closed when the load is in: a read-only connection, which
    DuckDB refuses while a connection of the run is open (in this process, or another),
    opens the file right after."""
    pipeline: Any = account.pipeline()
    account.sync(pipeline)
    with duckdb.connect(str(account.duckdb_path), read_only=True) as reader:
        assert reader.execute("SELECT count(*) FROM resend.contact_imports").fetchall() == [
            (len(account.store),)
        ]
