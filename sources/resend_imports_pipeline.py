"""Examples of the `resend_imports` source in a dlt pipeline of your own.

`dlt init resend_imports duckdb --location <this repository>` copies the source next to this
script. Set the key with RESEND_API_KEY (or `api_key` under `[sources.resend_imports]` in
.dlt/secrets.toml), and RESEND_API_URL to point at another server than api.resend.com.
"""

import dlt

from resend_imports import resend_source


def load_contact_imports() -> None:
    """Every run loads what changed since the last one: new imports, and open ones until they
    finish. The incremental state is kept in the destination, with the data."""
    pipeline = dlt.pipeline(
        pipeline_name="resend_imports", destination="duckdb", dataset_name="resend"
    )
    print(pipeline.run(resend_source()))


def load_failed_imports_only() -> None:
    """A filtered listing: every import with one status; the incremental state is left alone."""
    pipeline = dlt.pipeline(
        pipeline_name="resend_imports", destination="duckdb", dataset_name="resend"
    )
    print(pipeline.run(resend_source(status="failed")))


def reload_everything() -> None:
    """A complete listing, merged on `id` (no duplicates); imports Resend no longer has are
    marked with `deleted_at`."""
    pipeline = dlt.pipeline(
        pipeline_name="resend_imports", destination="duckdb", dataset_name="resend"
    )
    print(pipeline.run(resend_source(full_refresh=True)))


if __name__ == "__main__":
    load_contact_imports()
