"""Contender: our sync into PostgreSQL with every load package in a given dlt file format.

Usage: python -m benchmarks.postgres_sync insert_values|csv  (credentials from the environment)
"""

import sys

from resend_imports_pipelines.run import make_pipeline, run_sync


def main() -> None:
    summary = run_sync(make_pipeline("postgres"), loader_file_format=sys.argv[1])
    print("\n".join(summary.lines()))


if __name__ == "__main__":
    main()
