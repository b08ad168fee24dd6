"""How the source reads its destination (`reads`): a whole table streamed from DuckDB without
keeping what it read."""

from typing import Any, List

from sources.resend_imports.reads import SCAN_MEMORY_LIMIT, stream

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
