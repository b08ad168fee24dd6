"""Helpers the scenario tests share: what a person does to the destination (a statement, a
backup restored), what Resend does or returns changed, and what the tables say about one
import."""

import shutil
from contextlib import closing
from copy import deepcopy
from typing import Any, Callable, Dict, List, Tuple

import duckdb

from resend_imports_pipelines.simulator import ImportStore

from .conftest import Account

Rewrite = Callable[[str, Any], Any]


def resource_state(pipeline: Any) -> Dict[str, Any]:
    """The resource state of `contact_imports` in the pipeline's local state (a copy)."""
    sources = pipeline.state.get("sources", {})
    state: Dict[str, Any] = (
        sources.get("resend_imports", {}).get("resources", {}).get("contact_imports", {})
    )
    return deepcopy(state)


def synced(account: Account) -> Tuple[Account, Any]:
    """An account with its first sync done, and its pipeline: where most scenarios start."""
    pipeline = account.pipeline()
    account.sync(pipeline)
    return account, pipeline


def execute(account: Account, *statements: str) -> None:
    """Statements run by a person on the destination, outside the connector."""
    if account.postgres is None:
        with closing(duckdb.connect(str(account.duckdb_path))) as database:
            for statement in statements:
                database.execute(statement)
        return
    with closing(account.postgres.admin("analytics")) as server, server.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


def backup(account: Account) -> Callable[[], None]:
    """Copies the destination now; the function returned puts the copy back (a restore)."""
    if account.postgres is None:
        copy = account.workdir / "backup.duckdb"
        shutil.copy(account.duckdb_path, copy)

        def restore_file() -> None:
            shutil.copy(copy, account.duckdb_path)

        return restore_file
    server = account.postgres
    with closing(server.admin()) as connection, connection.cursor() as cursor:
        cursor.execute("CREATE DATABASE backup TEMPLATE analytics")

    def restore() -> None:
        with closing(server.admin()) as connection, connection.cursor() as cursor:
            cursor.execute("DROP DATABASE analytics WITH (FORCE)")
            cursor.execute("CREATE DATABASE analytics TEMPLATE backup")
            cursor.execute("DROP DATABASE backup")

    return restore


def finish(store: ImportStore, import_id: str, status: str = "failed") -> None:
    """Ends an open import (as Resend would), whatever the simulator's own schedule."""
    item = store.get(import_id)
    assert item is not None
    store.set_field(
        import_id,
        status=status,
        completed_at=store.now,
        counts={"total": 10, "created": 4, "updated": 0, "skipped": 0, "failed": 6},
    )


def corrupting(targets: Dict[str, Dict[str, Any]]) -> Rewrite:
    """A rewrite that changes these imports wherever the API returns them."""

    def rewrite(path: str, body: Any) -> Any:
        for item in body.get("data", [body]):
            item.update(targets.get(item.get("id"), {}))
        return body

    return rewrite


NOT_AN_INTEGER = {"counts": {"total": "x"}}


def drop_views(account: Account) -> None:
    """What a person must do first on PostgreSQL before dropping the table under them."""
    execute(account, "DROP VIEW IF EXISTS resend.contact_imports_daily")
    execute(account, "DROP VIEW IF EXISTS resend.contact_imports_enriched")


def deleted_at(account: Account, import_id: str) -> Any:
    rows = account.query(
        "SELECT deleted_at FROM {dataset}.contact_imports WHERE id = %s", import_id
    )
    return rows[0][0]


def history_statuses(account: Account, import_id: str) -> List[str]:
    rows = account.query(
        "SELECT status FROM {dataset}.contact_import_status_history WHERE import_id = %s"
        " ORDER BY observed_at",
        import_id,
    )
    return [row[0] for row in rows]


def alert_count(account: Account) -> int:
    rows = account.query(
        "SELECT count(*) FROM information_schema.tables"
        " WHERE table_schema = 'resend' AND table_name = 'contact_import_alerts'"
    )
    if not rows[0][0]:
        return 0  # dlt creates the table with its first row
    return int(account.query("SELECT count(*) FROM {dataset}.contact_import_alerts")[0][0])


def finished(account: Account, start: int = 0) -> str:
    return str(
        next(
            item["id"]
            for item in account.store.truth()[start:]
            if item["status"] in ("completed", "failed")
        )
    )


def stuck_import(account: Account, pipeline: Any) -> str:
    """The import of the state refreshed by id (stuck open deep in history)."""
    opened = resource_state(pipeline)["open_imports"]
    return str(next(import_id for import_id, known in opened.items() if known["refresh_by_id"]))


def read_malformed(account: Account, import_id: str) -> None:
    """The API returns this import with a count that is not a number, from now on."""
    account.simulator.rewrite = corrupting({import_id: NOT_AN_INTEGER})
