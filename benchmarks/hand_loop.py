"""Contender: a hand-written loop, requests plus one columnar DuckDB insert, full reload.

Correct after imports change only because it reloads everything every run.
Usage: python -m benchmarks.hand_loop DUCKDB_FILE
"""

import os
import sys

import duckdb
import pyarrow as pa
import requests

FIELDS = ("total", "created", "updated", "skipped", "failed")


def listed_imports() -> pa.Table:
    """Every import of the API, as columns (timestamps as the API's text): the least a
    connector does per import. `dlt_floor` loads the same table through dlt."""
    session = requests.Session()
    session.headers.update(
        {"Authorization": f"Bearer {os.environ['RESEND_API_KEY']}", "User-Agent": "hand-loop"}
    )
    url = os.environ["RESEND_API_URL"] + "/contacts/imports"
    columns: dict[str, list[object]] = {
        name: [] for name in ("id", "status", "created_at", "completed_at")
    }
    counts: dict[str, list[object]] = {f"counts__{f}": [] for f in FIELDS}
    params: dict[str, str | int] = {"limit": 100}
    while True:
        body = session.get(url, params=params, timeout=30).json()
        for item in body["data"]:
            for name in columns:
                columns[name].append(item.get(name))
            item_counts = item.get("counts") or {}
            for field in FIELDS:
                counts[f"counts__{field}"].append(item_counts.get(field))
        if not body["has_more"]:
            break
        params["after"] = body["data"][-1]["id"]
    return pa.table({**columns, **counts})


def main() -> None:
    imports = listed_imports()  # noqa: F841  (read by DuckDB below)
    with duckdb.connect(sys.argv[1]) as con:
        con.execute("CREATE SCHEMA IF NOT EXISTS resend")
        con.execute(
            "CREATE OR REPLACE TABLE resend.contact_imports AS SELECT id, status,"
            " CAST(created_at AS TIMESTAMPTZ) AS created_at,"
            " CAST(completed_at AS TIMESTAMPTZ) AS completed_at,"
            " counts__total, counts__created, counts__updated, counts__skipped, counts__failed"
            " FROM imports"
        )


if __name__ == "__main__":
    main()
