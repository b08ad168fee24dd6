"""`make bench`: resend-imports against dlt's rest_api source and a hand-written loop.

Every contender runs as its own process against one simulator process on loopback, in
interleaved rounds (the order rotates each round). The tables show medians of wall time,
the largest peak RSS of the contender's process, requests per run, and whether its table
equals the simulator's imports after they changed. Ratios are against contenders measured
in the same run: the machine is shared and noisy.

    python -m benchmarks.bench [--imports 100000] [--rounds 3] [--scale 10000,100000,1000000]
        [--baseline COMMIT]

`--baseline COMMIT` adds this connector as it was at COMMIT (unpacked from git history) as a
contender, so that a change is measured against what it replaces in the same run; `--scale`
runs, at each size, a first sync and then a `--full-refresh` on the table it made (the
complete listing that reconciles the table with the API, the memory-hungry path).

The contenders and how one is run and checked: `contenders.py`; the tables: `report.py`.
"""

import argparse
import subprocess
import sys
import tempfile
from itertools import pairwise
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from tests.throwaway_postgres import ThrowawayPostgres

from .contenders import (
    CONTENDERS,
    OURS,
    OURS_POSTGRES,
    POSTGRES_CONTENDERS,
    PYTHON,
    REPO,
    REST_API_DEFAULT,
    REST_API_DEFAULT_COMMAND,
    Results,
    Run,
    SimulatorProcess,
    baseline_command,
    baseline_tree,
    postgres_table_is_correct,
    run_contender,
    table_is_correct,
)
from .report import report


def compare(
    imports: int,
    rounds: int,
    contenders: Dict[str, List[str]],
    postgres: Optional[Any] = None,
) -> Dict[str, Results]:
    """Full sync, then an incremental run after 30 new imports and open ones progressing."""
    results = {name: Results() for name in contenders}
    names = list(contenders)
    with SimulatorProcess(imports, stuck=2) as sim, tempfile.TemporaryDirectory() as scratch:
        for round_number in range(rounds):
            order = names[round_number % len(names) :] + names[: round_number % len(names)]
            for name in order:
                workdir = Path(scratch) / f"{round_number}-{name.replace(' ', '_')}"
                workdir.mkdir()
                extra_env: Dict[str, str] = {}
                if name in POSTGRES_CONTENDERS:
                    assert postgres is not None
                    postgres.reset_database()
                    extra_env["DESTINATION__POSTGRES__CREDENTIALS"] = postgres.dsn()
                sim.call("POST", "reset")
                command = contenders[name]
                results[name].full.append(run_contender(command, workdir, sim, extra_env))
                sim.call("POST", "advance?new=30&seconds=600")
                results[name].incremental.append(run_contender(command, workdir, sim, extra_env))
                truth = sim.call("GET", "truth")
                if postgres is not None and name in POSTGRES_CONTENDERS:
                    correct = postgres_table_is_correct(postgres.dsn(), workdir, truth)
                else:
                    correct = table_is_correct(workdir / "bench.duckdb", truth)
                results[name].correct.append(correct)
                print(f"  round {round_number + 1}: {name} done", file=sys.stderr)
    return results


def quiet_run_requests() -> tuple[int, float]:
    """Requests and wall of our run when nothing is new and nothing is open."""
    with SimulatorProcess(5000, stuck=0) as sim, tempfile.TemporaryDirectory() as scratch:
        sim.call("POST", "advance?new=0&seconds=3600")
        sim.call("POST", "advance?new=0&seconds=3600")
        run_contender(CONTENDERS[OURS], Path(scratch), sim)
        quiet = run_contender(CONTENDERS[OURS], Path(scratch), sim)
    return quiet.requests, quiet.wall


def rate_limited(start_up: float) -> Dict[str, Any]:
    """5,000 imports behind a limit of 10 requests a second."""
    with SimulatorProcess(5000, stuck=0, rate_limit=10) as sim, tempfile.TemporaryDirectory() as d:
        run = run_contender(CONTENDERS[OURS], Path(d), sim)
        stats = sim.call("GET", "stats")
    retries = _summary_number(run.output, "retries")
    bound = 1.1 * run.requests / 10 + start_up
    return {
        "wall": run.wall,
        "requests": run.requests,
        "429s": int(stats.get("status_429", 0)),
        "retries": retries,
        "bound": bound,
    }


def _summary_number(output: str, label: str) -> int:
    """A number from our summary line, e.g. 'retries 0,'."""
    for line in output.splitlines():
        words = line.replace(",", " ").replace(";", " ").split()
        for before, after in pairwise(words):
            if before == label and after.isdigit():
                return int(after)
    return -1


def scale(
    sizes: Sequence[int],
    contenders: Dict[str, List[str]],
    postgres: Optional[Any] = None,
    skip: Sequence[tuple[int, str]] = (),
) -> List[tuple[int, str, Run, Run]]:
    """At each size, each contender's first sync, then 30 new imports and a `--full-refresh`
    on the table it made: time should grow linearly, memory should not (`skip`: pairs of
    size and contender not run)."""
    runs = []
    for size in sizes:
        for name, command in contenders.items():
            if (size, name) in skip:
                continue
            extra_env: Dict[str, str] = {}
            if "postgres" in command:
                assert postgres is not None
                postgres.reset_database()
                extra_env["DESTINATION__POSTGRES__CREDENTIALS"] = postgres.dsn()
            with SimulatorProcess(size, stuck=0) as sim, tempfile.TemporaryDirectory() as scratch:
                first = run_contender(command, Path(scratch), sim, extra_env)
                sim.call("POST", "advance?new=30&seconds=600")
                refresh = run_contender([*command, "--full-refresh"], Path(scratch), sim, extra_env)
                runs.append((size, name, first, refresh))
            print(f"  scale {size}: {name} done", file=sys.stderr)
    return runs


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__)
    parser.add_argument("--imports", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scale", default="10000,100000,1000000", help="sizes, or '' for none")
    parser.add_argument("--with-rest-api-default", action="store_true", help="slow: ~3 GiB")
    parser.add_argument("--no-rate-limit", action="store_true")
    parser.add_argument("--check", action="store_true", help="exit 1 unless ours is correct")
    parser.add_argument(
        "--no-postgres", action="store_true", help="skip ours on a throwaway PostgreSQL server"
    )
    parser.add_argument("--baseline", metavar="COMMIT", help="also run ours as it was at COMMIT")
    parser.add_argument(
        "--baseline-scale", help="the --scale sizes the baseline runs at (default: every one)"
    )
    parser.add_argument(
        "--accounts", action="store_true", help="only the cases of several accounts (accounts.py)"
    )
    parser.add_argument(
        "--lakehouse",
        action="store_true",
        help="only Delta beside DuckDB, at --imports (lakehouse.py)",
    )
    args = parser.parse_args(argv)
    if args.accounts:  # a module of its own, which uses this one's runner
        return subprocess.call([PYTHON, "-m", "benchmarks.accounts"], cwd=REPO)
    if args.lakehouse:
        command = [PYTHON, "-m", "benchmarks.lakehouse", "--imports", str(args.imports)]
        return subprocess.call(command, cwd=REPO)

    unpacked = tempfile.TemporaryDirectory()
    contenders = dict(CONTENDERS)
    scale_contenders = {OURS: CONTENDERS[OURS]}
    if not args.no_postgres:
        scale_contenders[OURS_POSTGRES] = POSTGRES_CONTENDERS[OURS_POSTGRES]
    baseline = None
    if args.baseline:
        baseline = f"resend-imports @{args.baseline}"
        tree = baseline_tree(args.baseline, Path(unpacked.name))
        contenders[baseline] = scale_contenders[baseline] = baseline_command(tree)
        if not args.no_postgres:
            baseline_on_postgres = [*baseline_command(tree), "--destination", "postgres"]
            scale_contenders[f"{baseline} → PostgreSQL"] = baseline_on_postgres
    if args.with_rest_api_default:
        contenders[REST_API_DEFAULT] = REST_API_DEFAULT_COMMAND
    postgres = None
    if not args.no_postgres:
        postgres = ThrowawayPostgres().start()
        contenders.update(POSTGRES_CONTENDERS)
    try:
        results = compare(args.imports, args.rounds, contenders, postgres)
        quiet = quiet_run_requests()
        limited = None if args.no_rate_limit else rate_limited(start_up=quiet[1])
        sizes = [int(s) for s in args.scale.split(",") if s.strip()]
        baseline_sizes = sizes
        if args.baseline_scale is not None:
            baseline_sizes = [int(s) for s in args.baseline_scale.split(",") if s.strip()]
        skip = [
            (size, name)
            for size in sizes
            for name in scale_contenders
            if baseline and name.startswith(baseline) and size not in baseline_sizes
        ]
        scaled = scale(sizes, scale_contenders, postgres, skip)
    finally:
        if postgres is not None:
            postgres.stop()
        unpacked.cleanup()
    lines = report(args.imports, results, quiet, limited, scaled, baseline)
    print("\n".join(lines))
    ours = results[OURS]
    good = all(ours.correct) and all(r.ok for r in ours.full + ours.incremental)
    for name in POSTGRES_CONTENDERS:
        if name in results:
            on_postgres = results[name]
            good = good and all(on_postgres.correct)
            good = good and all(r.ok for r in on_postgres.full + on_postgres.incremental)
    good = good and all(first.ok and refresh.ok for _, _, first, refresh in scaled)
    good = good and ours.full[-1].requests == -(-args.imports // 100) and quiet[0] == 1
    return 0 if good or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
