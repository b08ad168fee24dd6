"""`make bench BENCH_ARGS=--lakehouse`: the connector into Delta beside DuckDB (issue 21).

Measured in one run, against one simulator of 100,000 imports (`--imports` to change it),
each sync a `resend-imports sync` process of its own on a fresh working folder: a first
sync and an incremental run (30 new imports, open ones moved on) into a DuckDB file, then
the same into a Delta table on a local `file://` bucket; each run's wall time and peak RSS,
and whether the Delta table (read by the `deltalake` package) equals the API.
"""

import argparse
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Set, Tuple

import deltalake

from .contenders import RESEND_IMPORTS, Run, SimulatorProcess, run_contender

SYNC = [RESEND_IMPORTS, "sync", "--progress", "none"]


def _delta_rows(bucket: Path) -> Tuple[int, Set[str]]:
    """Rows of the Delta table (read by the `deltalake` package), and the ids among them."""
    table = deltalake.DeltaTable(str(bucket / "resend" / "contact_imports")).to_pyarrow_table(
        columns=["id"]
    )
    return table.num_rows, set(table.column("id").to_pylist())


def _first_and_incremental(
    sim: SimulatorProcess, workdir: Path, command: List[str], env: Dict[str, str]
) -> Tuple[Run, Run]:
    workdir.mkdir(parents=True)
    first = run_contender(command, workdir, sim, env)
    sim.call("POST", "advance?new=30&seconds=600")
    incremental = run_contender(command, workdir, sim, env)
    if not (first.ok and incremental.ok):
        output = first.output + incremental.output
        raise SystemExit(f"sync failed in {workdir}:\n{output[-2000:]}")
    return first, incremental


def run_lakehouse_bench(imports: int) -> List[str]:
    lines = [f"{imports:,} imports, first sync then an incremental run (30 new):"]
    with tempfile.TemporaryDirectory(prefix="bench-lakehouse-") as folder:
        root = Path(folder)
        with SimulatorProcess(imports, 2) as sim:
            duckdb_runs = _first_and_incremental(sim, root / "duckdb", SYNC, {})
            bucket = root / "bucket"
            delta_env = {"DESTINATION__FILESYSTEM__BUCKET_URL": bucket.as_uri()}
            delta_command = [*SYNC, "--destination", "filesystem", "--table-format", "delta"]
            delta_runs = _first_and_incremental(sim, root / "delta", delta_command, delta_env)
            truth = {record["id"] for record in sim.call("GET", "truth")}
        rows, ids = _delta_rows(bucket)
    for name, (first, incremental) in (("DuckDB", duckdb_runs), ("Delta", delta_runs)):
        lines.append(
            f"  {name:<7} first sync {first.wall:6.2f} s, peak RSS {first.peak_rss_mib:4.0f} MiB;"
            f" incremental {incremental.wall:5.2f} s, peak RSS {incremental.peak_rss_mib:4.0f} MiB"
        )
    ratio_first = delta_runs[0].wall / duckdb_runs[0].wall
    ratio_incremental = delta_runs[1].wall / duckdb_runs[1].wall
    lines.append(
        f"  Delta / DuckDB: first sync {ratio_first:.2f}, incremental {ratio_incremental:.2f}"
    )
    same = "equal to the API's" if rows == len(ids) and ids == truth else "NOT the API's"
    lines.append(f"  Delta table: {rows:,} rows, {len(ids):,} ids, {same} {len(truth):,}")
    return lines


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.lakehouse", description=__doc__)
    parser.add_argument("--imports", type=int, default=100_000)
    print("\n".join(run_lakehouse_bench(parser.parse_args(argv).imports)))


if __name__ == "__main__":
    main()
