"""The views and the report over a lakehouse (Delta or Iceberg tables on a bucket).

A bucket keeps no views: each reader makes them. Here the tables are read by their formats'
own libraries into an in-memory DuckDB through Arrow (nothing downloaded, see
`sources/resend_imports/lake.py`) and the views created there from the same SQL as on a
database (`views.view_statements`), so `report` and a user's queries see the same figures
on every destination. The schema is the bucket's own (the working folder's may describe
another destination, or none).
"""

import json
from contextlib import contextmanager
from typing import Any, Iterator, Optional

import dlt
from dlt.common.schema import Schema
from dlt.destinations.impl.filesystem.filesystem import FilesystemClient

from resend_imports.alerts import ALERTS_TABLE
from resend_imports.lake import LakeTables, table_format_of
from resend_imports.settings import SOURCE_NAME, TABLE_NAME

from .views import view_statements


def _with_stored_schema(pipeline: dlt.Pipeline, client: FilesystemClient) -> FilesystemClient:
    """A client on the newest schema the bucket holds (this working folder may never have
    synced it, or synced another destination), else `client`."""
    stored = client.get_stored_schema(SOURCE_NAME)
    if stored is None:
        return client
    schema = Schema.from_stored_schema(json.loads(stored.schema))
    destination: Any = pipeline.destination
    found: FilesystemClient = destination.client(schema, client.config)
    return found


@contextmanager
def lakehouse_sql(pipeline: dlt.Pipeline) -> Iterator[Optional[Any]]:
    """A dlt SQL client over the lakehouse's tables and the views, or None when the
    pipeline's destination holds no Delta or Iceberg `contact_imports`."""
    with pipeline.destination_client() as probe:
        if not isinstance(probe, FilesystemClient):
            yield None
            return
        client = _with_stored_schema(pipeline, probe)
        if table_format_of(client, TABLE_NAME) is None:
            yield None
            return
        lake = LakeTables(client)
        try:
            if lake.load(TABLE_NAME):
                lake.load(ALERTS_TABLE)
                for statement in view_statements(lake.sql_client):
                    lake.sql_client.execute_sql(statement)
            yield lake.sql_client
        finally:
            lake.close()
