"""`resend-imports demo`: the whole connector on the bundled simulator, no key or network.

Two simulated Resend accounts (two teams of one company, each with its own history) are
served on one port and synced by one run into one table, configured as a user configures
several accounts: the `accounts` mapping of name to API key, the argument dlt resolves from
`[sources.resend_imports.accounts]`. So the demo shows what the connector does with more
than one team, and checks each account's rows against that account's own truth.

The simulated accounts live in the present: their histories end at the real clock, their
open imports were just created, so the alerts the runs raise are those a real account would
(the failures of the last day, an import stuck for a day), not every open import of a
history that ended long ago. Time passing between the two syncs moves the simulators'
clocks ahead of the real one: imports that arrive then are created up to `STEP` later than
now.
"""

import os
import shlex
import shutil
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Dict, NamedTuple, Sequence

import dlt

from resend_imports.alerts import ALERTS_TABLE

from ..formatting import count as shown
from ..run import DATASET_NAME, make_pipeline, run_sync
from .account import Simulator
from .server import RunningSimulator
from .store import ImportStore
from .verify import differences

DEMO_PIPELINE = "resend_imports_demo"
STEP = timedelta(minutes=15)  # the time that passes between the two syncs


class DemoAccount(NamedTuple):
    """One simulated team: its name in the `accounts` mapping, its key, its history."""

    name: str
    api_key: str
    seed: int
    smaller_by: int  # its history has `--imports` // smaller_by imports
    arrivals: int  # imports created while time passes (the history has one every 5 minutes)


# `--imports N` is the first account's history; the second is a smaller team
DEMO_ACCOUNTS = (
    DemoAccount("acme", "re_demo_acme_key_not_secret", seed=7, smaller_by=1, arrivals=5),
    DemoAccount("globex", "re_demo_globex_key_not_secret", seed=15, smaller_by=4, arrivals=2),
)

HEADER = (
    f"  {'account':<9}{'status':<12}{'imports':>8}{'contacts':>12}{'failed':>12}  newest import"
)

SUMMARY_SQL = """
SELECT account, status, count(*) AS imports, sum(counts__total) AS rows_total,
       sum(counts__failed) AS rows_failed, max(created_at) AS newest
FROM {table} GROUP BY account, status ORDER BY account, imports DESC, status
"""
ALERTS_SQL = """
SELECT account, rule, count(*) FROM {table} GROUP BY account, rule
ORDER BY account, count(*) DESC, rule
"""


def imports_of(account: DemoAccount, imports: int) -> int:
    """The size of `account`'s history when the first account has `imports`."""
    return max(1, imports // account.smaller_by)


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


def _simulator(stores: Dict[str, ImportStore]) -> Simulator:
    """One simulator serving every demo account on one port, each by its own key."""
    first, *others = DEMO_ACCOUNTS
    simulator = Simulator(stores[first.name], api_keys=(first.api_key,))
    for account in others:
        simulator.add_account(account.api_key, Simulator(stores[account.name], (account.api_key,)))
    return simulator


def _checked(pipeline: dlt.Pipeline, stores: Dict[str, ImportStore]) -> bool:
    """Whether each account's rows equal its simulator's imports; prints the verdict."""
    problems = {name: differences(pipeline, store.truth(), name) for name, store in stores.items()}
    verdicts = ", ".join(f"{name} {'NO' if found else 'yes'}" for name, found in problems.items())
    print(f"  each account's rows equal its simulator's imports: {verdicts}")
    for name, found in problems.items():
        for problem in found[:5]:
            print(f"    {name}: {problem}")
    return not any(problems.values())


def _time_passes(stores: Dict[str, ImportStore]) -> None:
    print(f"time passes ({STEP.seconds // 60} minutes):")
    for account in DEMO_ACCOUNTS:
        moved = stores[account.name].advance(account.arrivals, STEP.total_seconds())
        print(
            f"  {account.name}: {moved['progressed']} open imports progressed,"
            f" {moved['new']} new imports arrived"
        )


def _print_tables(path: Path, rows: Sequence[Sequence[Any]], alerts: Sequence[Any]) -> None:
    print(f"\n{path} — imports by account and status:")
    print(HEADER)
    for account, status, count, total, failed, newest in rows:
        print(
            f"  {account:<9}{status:<12}{shown(count):>8}{shown(total or 0):>12}"
            f"{shown(failed or 0):>12}  {newest:%Y-%m-%d %H:%M}"
        )
    print(f"\nalerts in {DATASET_NAME}.{ALERTS_TABLE} by account:")
    for account in DEMO_ACCOUNTS:
        raised = [f"{rule} {count}" for name, rule, count in alerts if name == account.name]
        print(f"  {account.name:<9}{', '.join(raised) or 'none'}")


def demo_stores(imports: int) -> Dict[str, ImportStore]:
    """Each demo account's imports, by name, as of now (`imports` for the first account)."""
    now = datetime.now(UTC)
    return {
        account.name: ImportStore(imports_of(account, imports), account.seed, history_end=now)
        for account in DEMO_ACCOUNTS
    }


def run_demo(imports: int, file: str) -> int:
    """`resend-imports demo`: 0 when each account's rows are its simulator's imports."""
    return sync_demo(demo_stores(imports), Path(file).resolve())


def sync_demo(stores: Dict[str, ImportStore], path: Path) -> int:
    """Syncs the accounts of `stores` in one run into a new DuckDB file at `path`, twice,
    with time passing in between (the stores move on); 0 when each account's rows are its
    simulator's imports after each run."""
    for stale in (path, path.with_name(path.name + ".wal")):
        stale.unlink(missing_ok=True)
    # what a user writes under [sources.resend_imports.accounts]: name = API key
    accounts = {account.name: account.api_key for account in DEMO_ACCOUNTS}
    with RunningSimulator(_simulator(stores)) as running, tempfile.TemporaryDirectory() as workdir:
        sizes = ", ".join(f"{name} {shown(len(store))} imports" for name, store in stores.items())
        print(f"simulator at {running.url} serving {len(stores)} accounts: {sizes}")
        names = ", ".join(f'{name} = "re_..."' for name in accounts)
        print(f"accounts configured as [sources.resend_imports.accounts] {names}")
        pipeline = make_pipeline(
            dlt.destinations.duckdb(str(path)),
            pipeline_name=DEMO_PIPELINE,
            pipelines_dir=os.path.join(workdir, "pipelines"),
        )
        correct = True
        for run in (1, 2):
            if run == 2:
                _time_passes(stores)
            # simulated alerts never reach a channel the project may configure for real
            summary = run_sync(
                pipeline, accounts=accounts, base_url=running.url, deliver_alerts=False
            )
            print("\n".join(summary.lines()))
            correct = _checked(pipeline, stores) and correct
        with pipeline.sql_client() as client:
            table = client.make_qualified_table_name("contact_imports")
            rows = client.execute_sql(SUMMARY_SQL.format(table=table)) or []
            outbox = client.make_qualified_table_name(ALERTS_TABLE)
            alerts = client.execute_sql(ALERTS_SQL.format(table=outbox)) or []
    _print_tables(path, rows, alerts)
    strangers = {row[0] for row in rows} - set(accounts)
    if strangers:  # rows of no configured account: never, or the check failed
        print(f"  rows of accounts not configured: {', '.join(sorted(strangers))}")
    print(f"\nexplore it: {_command()} report --duckdb {shlex.quote(_shown(path))}")
    return 0 if correct and not strangers else 1
