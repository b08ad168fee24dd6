"""`resend-imports demo`: the whole connector on the bundled simulator, no key or network."""

import logging
import os
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

import dlt

from ..run import make_pipeline, run_sync
from .account import Simulator
from .server import RunningSimulator
from .store import ImportStore
from .verify import differences

DEMO_KEY = "re_demo_key_not_secret"
DEMO_PIPELINE = "resend_imports_demo"

logger = logging.getLogger("resend_imports")

SUMMARY_SQL = """
SELECT status, count(*) AS imports, sum(counts__total) AS rows_total,
       sum(counts__failed) AS rows_failed, max(created_at) AS newest
FROM {table} GROUP BY status ORDER BY imports DESC
"""


def _shown(path: Path) -> str:
    """`path` relative to the working directory when it is below it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _command() -> str:
    """This command as the user can run it from here (`.venv/bin/resend-imports` after
    `make install`, or the bare name when it is on the PATH)."""
    program = Path(sys.argv[0])
    if program.name == "resend-imports" and shutil.which("resend-imports") != str(program):
        return shlex.quote(_shown(program.resolve()))
    return "resend-imports"


def run_demo(imports: int, file: str) -> int:
    """Syncs a fresh simulated account twice, with time passing in between; 0 when correct."""
    path = Path(file).resolve()
    for stale in (path, path.with_name(path.name + ".wal")):
        stale.unlink(missing_ok=True)
    store = ImportStore(imports, seed=7)
    simulator = Simulator(store, api_keys=(DEMO_KEY,))
    with RunningSimulator(simulator) as running, tempfile.TemporaryDirectory() as workdir:
        print(f"simulator with {len(store)} imports at {running.url}")
        pipeline = make_pipeline(
            dlt.destinations.duckdb(str(path)),
            pipeline_name=DEMO_PIPELINE,
            pipelines_dir=os.path.join(workdir, "pipelines"),
        )
        correct = True
        for run in (1, 2):
            if run == 2:
                moved = store.advance(new=50, seconds=900)
                print(
                    f"time passes: {moved['progressed']} open imports progressed,"
                    f" {moved['new']} new imports arrived"
                )
            summary = run_sync(pipeline, api_key=DEMO_KEY, base_url=running.url)
            print("\n".join(summary.lines()))
            problems = differences(pipeline, store.truth())
            correct = correct and not problems
            print(f"  table equals the simulator's imports: {'yes' if not problems else 'NO'}")
            for problem in problems[:5]:
                print(f"    {problem}")
        with pipeline.sql_client() as client:
            table = client.make_qualified_table_name("contact_imports")
            rows = client.execute_sql(SUMMARY_SQL.format(table=table)) or []
    print(f"\n{path} — imports by status:")
    print(f"  {'status':<12}{'imports':>8}{'rows total':>12}{'rows failed':>12}  newest")
    for status, count, total, failed, newest in rows:
        print(f"  {status:<12}{count:>8}{total or 0:>12}{failed or 0:>12}  {newest:%Y-%m-%d %H:%M}")
    print(f"\nexplore it: {_command()} report --duckdb {shlex.quote(_shown(path))}")
    return 0 if correct else 1
