"""Contender: the least a dlt pipeline can do, for the ratio the hand loop cannot give.

The hand loop's requests and columns (`hand_loop.listed_imports`, timestamps cast by Arrow),
handed to dlt as one Arrow table merged on `id` into DuckDB: dlt's start-up, extract,
staging and de-duplicating merge, and nothing of the connector's (no parsing per import, no
history, no state, no alerts). What a full sync of ours costs above it is what the connector
itself costs; the hand loop's ratio also counts what any dlt pipeline costs.
Usage: python -m benchmarks.dlt_floor DUCKDB_FILE
"""

import sys

import dlt
import pyarrow as pa
import pyarrow.compute as pc

from .hand_loop import listed_imports

TIMESTAMP = pa.timestamp("us", tz="UTC")


def main() -> None:
    imports = listed_imports()
    for name in ("created_at", "completed_at"):
        position = imports.schema.get_field_index(name)
        imports = imports.set_column(position, name, pc.cast(imports[name], TIMESTAMP))
    # the key typed as dlt types a primary key, so that dlt need not reconcile the two
    key = imports.schema.get_field_index("id")
    imports = imports.cast(imports.schema.set(key, pa.field("id", pa.string(), nullable=False)))
    pipeline = dlt.pipeline(
        "dlt_floor", destination=dlt.destinations.duckdb(sys.argv[1]), dataset_name="resend"
    )
    pipeline.run(imports, table_name="contact_imports", write_disposition="merge", primary_key="id")


if __name__ == "__main__":
    main()
