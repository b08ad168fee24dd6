"""`resend-imports demo`: the whole connector on the bundled simulator, no key or network.

The simulated account lives in the present: its history ends at the real clock, its open
imports were just created, so the alerts the runs raise are those a real account would
(the failures of the last day, an import stuck for a day), not every open import of a
history that ended long ago. Time passing between the two syncs moves the simulator's
clock ahead of the real one: imports that arrive then are created up to `STEP` later than
now.
"""

import logging
import os
import shlex
import shutil
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dlt

from sources.resend_imports.alerts import ALERTS_TABLE

from ..formatting import count as shown
from ..run import DATASET_NAME, make_pipeline, run_sync
from .account import Simulator
from .server import RunningSimulator
from .store import ImportStore
from .verify import differences

DEMO_KEY = "re_demo_key_not_secret"
DEMO_PIPELINE = "resend_imports_demo"
DEMO_SEED = 7
STEP = timedelta(minutes=15)  # the time that passes between the two syncs
ARRIVALS = 5  # imports created meanwhile (the history has one every 5 minutes or so)

logger = logging.getLogger("resend_imports")

SUMMARY_SQL = """
SELECT status, count(*) AS imports, sum(counts__total) AS rows_total,
       sum(counts__failed) AS rows_failed, max(created_at) AS newest
FROM {table} GROUP BY status ORDER BY imports DESC
"""
ALERTS_SQL = "SELECT rule, count(*) FROM {table} GROUP BY rule ORDER BY count(*) DESC, rule"


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
    store = ImportStore(imports, seed=DEMO_SEED, history_end=datetime.now(UTC))
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
                moved = store.advance(new=ARRIVALS, seconds=STEP.total_seconds())
                print(
                    f"time passes ({STEP.seconds // 60} minutes): {moved['progressed']} open"
                    f" imports progressed, {moved['new']} new imports arrived"
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
            outbox = client.make_qualified_table_name(ALERTS_TABLE)
            alerts = client.execute_sql(ALERTS_SQL.format(table=outbox)) or []
    print(f"\n{path} — imports by status:")
    print(f"  {'status':<12}{'imports':>8}{'contacts':>12}{'failed':>12}  newest import")
    for status, count, total, failed, newest in rows:
        print(
            f"  {status:<12}{shown(count):>8}{shown(total or 0):>12}{shown(failed or 0):>12}"
            f"  {newest:%Y-%m-%d %H:%M}"
        )
    raised = ", ".join(f"{rule} {count}" for rule, count in alerts) or "none"
    print(f"\nalerts in {DATASET_NAME}.{ALERTS_TABLE}: {raised}")
    print(f"\nexplore it: {_command()} report --duckdb {shlex.quote(_shown(path))}")
    return 0 if correct else 1
