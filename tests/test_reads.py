"""How the source reads its destination (`reads`): a whole table streamed from DuckDB without
keeping what it read."""

from typing import Any, List

from resend_imports.reads import SCAN_MEMORY_LIMIT, stream

from .conftest import Account


def memory_limit(cursor: Any) -> str:
    return str(cursor.execute("SELECT current_setting('memory_limit')").fetchall()[0][0])


def test_duckdb_streams_the_table_under_a_lower_memory_limit_then_sets_it_back(
    account: Account,
) -> None:
    """The blocks a scan reads stay cached up to DuckDB's memory limit: a complete listing
    would otherwise keep more memory the larger the table."""
    account.sync(account.pipeline())
    with account.pipeline().sql_client() as client:
        settings = client.native_connection.cursor()  # beside the streamed result
        configured = memory_limit(settings)
        settings.execute(f"SET memory_limit = '{SCAN_MEMORY_LIMIT}'")
        lowered = memory_limit(settings)
        settings.execute(f"SET memory_limit = '{configured}'")
        assert lowered != configured
        during: List[str] = []
        rows = 0
        for batch in stream(client, "SELECT id FROM resend.contact_imports", 100):
            during.append(memory_limit(settings))
            rows += batch.num_rows
        assert rows == len(account.store)
        assert set(during) == {lowered}
        assert memory_limit(settings) == configured


def test_scans_at_once_set_back_the_configured_limit(account: Account) -> None:
    """The accounts' threads stream their rows at once from one database, whose limit all
    their connections share: whatever order they end in, the limit the load then runs
    under is the configured one, not a scan's."""
    account.sync(account.pipeline())
    with account.pipeline().sql_client() as one, account.pipeline().sql_client() as other:
        settings = one.native_connection.cursor()  # the same database: one per file
        configured = memory_limit(settings)
        query = "SELECT id FROM resend.contact_imports"
        first, second = stream(one, query, 100), stream(other, query, 100)
        next(first)
        next(second)  # started while the first runs, under the lowered limit
        assert memory_limit(settings) != configured
        rows = sum(batch.num_rows for batch in first) + sum(batch.num_rows for batch in second)
        assert rows == 2 * len(account.store) - 200
        assert memory_limit(settings) == configured
