"""Contender: dlt's generic rest_api source configured for Resend's contact imports.

What a user would otherwise write: cursor paginator on `after`, incremental on `created_at`
(newest first, so it stops at the first older row), merge on `id`.
Usage: python -m benchmarks.rest_api_sync DUCKDB_FILE jsonl|default
"""

import os
import sys

import dlt
from dlt.sources.helpers.rest_client.paginators import JSONResponseCursorPaginator
from dlt.sources.rest_api import rest_api_source


def main() -> None:
    database, file_format = sys.argv[1], sys.argv[2]
    source = rest_api_source(
        {
            "client": {
                "base_url": os.environ["RESEND_API_URL"],
                "auth": {"type": "bearer", "token": os.environ["RESEND_API_KEY"]},
                "headers": {"User-Agent": "rest-api-benchmark"},
                "paginator": JSONResponseCursorPaginator(
                    cursor_path="data[-1].id", cursor_param="after"
                ),
            },
            "resources": [
                {
                    "name": "contact_imports",
                    "primary_key": "id",
                    "write_disposition": "merge",
                    "endpoint": {
                        "path": "contacts/imports",
                        "params": {"limit": 100},
                        "data_selector": "data",
                        "incremental": {
                            "cursor_path": "created_at",
                            "initial_value": "1970-01-01 00:00:00+00",
                            "row_order": "desc",
                        },
                    },
                }
            ],
        }
    )
    pipeline = dlt.pipeline(
        "rest_api_bench", destination=dlt.destinations.duckdb(database), dataset_name="resend"
    )
    if file_format == "default":
        pipeline.run(source)
    else:
        pipeline.run(source, loader_file_format="jsonl")


if __name__ == "__main__":
    main()
