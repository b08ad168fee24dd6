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
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC
from io import BytesIO
from itertools import pairwise
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import dlt
import duckdb

from resend_imports.records import parse_timestamp
from resend_imports_pipelines.run import make_pipeline
from resend_imports_pipelines.simulator.verify import COMPARED, differences, expected_records
from tests.throwaway_postgres import ThrowawayPostgres

API_KEY = "re_bench_key"
REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
RESEND_IMPORTS = str(Path(sys.executable).with_name("resend-imports"))
OURS = "resend-imports"
REST_API = "rest_api (jsonl)"
HAND_LOOP = "hand loop"

CONTENDERS: Dict[str, List[str]] = {
    OURS: [RESEND_IMPORTS, "sync"],
    REST_API: [PYTHON, "-m", "benchmarks.rest_api_sync", "{db}", "jsonl"],
    HAND_LOOP: [PYTHON, "-m", "benchmarks.hand_loop", "{db}"],
}
# ours into a throwaway PostgreSQL server: dlt's csv (COPY) for bulk runs, as shipped, and
# every run as INSERT statements (dlt's default format for PostgreSQL), for the choice
OURS_POSTGRES = "resend-imports → PostgreSQL (csv)"
OURS_POSTGRES_INSERTS = "resend-imports → PostgreSQL (insert_values)"
POSTGRES_CONTENDERS: Dict[str, List[str]] = {
    OURS_POSTGRES: [RESEND_IMPORTS, "sync", "--destination", "postgres"],
    OURS_POSTGRES_INSERTS: [PYTHON, "-m", "benchmarks.postgres_sync", "insert_values"],
}
REST_API_DEFAULT = "rest_api (default)"
REST_API_DEFAULT_COMMAND = [PYTHON, "-m", "benchmarks.rest_api_sync", "{db}", "default"]


def baseline_tree(commit: str, into: Path) -> Path:
    """The repository at `commit`, unpacked from git history into `into`."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", commit],
        capture_output=True,
        check=True,
    ).stdout
    folder = into / f"resend-imports-{commit}"
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    return folder


def code_path(tree: Path) -> str:
    """The PYTHONPATH that puts a tree's code first: its two package folders and the tree
    (the contenders in `benchmarks`), or the tree alone for commits from before the packages
    got distinctive names."""
    if (tree / "pipelines" / "resend_imports_pipelines").is_dir():
        return os.pathsep.join([str(tree / "sources"), str(tree / "pipelines"), str(tree)])
    return str(tree)


def baseline_command(tree: Path) -> List[str]:
    """The CLI of an unpacked tree (`python -m <its command package> sync`, its code first)."""
    cli = "resend_imports_pipelines" if code_path(tree) != str(tree) else "pipelines"
    return ["env", f"PYTHONPATH={code_path(tree)}", PYTHON, "-m", cli, "sync"]


@dataclass
class Run:
    """One contender process: its wall time, its own peak RSS and the requests it made."""

    wall: float
    peak_rss_mib: float
    requests: int
    ok: bool
    output: str


@dataclass
class Results:
    full: List[Run] = field(default_factory=list)
    incremental: List[Run] = field(default_factory=list)
    correct: List[bool] = field(default_factory=list)


class SimulatorProcess:
    """The bundled simulator in a process of its own, so that it shares no GIL with anyone."""

    def __init__(
        self, imports: int, stuck: int, rate_limit: Optional[int] = None, accounts: int = 1
    ) -> None:
        command = [
            PYTHON,
            "-m",
            "resend_imports_pipelines.simulator",
            "--imports",
            str(imports),
            "--seed",
            "1",
        ]
        command += ["--api-key", API_KEY, "--stuck", str(stuck), "--accounts", str(accounts)]
        if rate_limit:
            command += ["--rate-limit", str(rate_limit)]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().strip()

    def call(self, method: str, path: str) -> Any:
        request = urllib.request.Request(f"{self.url}/_simulator/{path}", method=method)
        with urllib.request.urlopen(request, timeout=600) as answer:
            return json.loads(answer.read() or b"null")

    def __enter__(self) -> "SimulatorProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def _peak_rss_mib(pid: int, previous: float) -> float:
    """VmHWM of a running process: its peak RSS since exec (ru_maxrss would include what
    the forking parent had touched)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return previous
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return max(previous, int(line.split()[1]) / 1024)
    return previous


def run_contender(
    command: Sequence[str],
    workdir: Path,
    sim: SimulatorProcess,
    extra_env: Optional[Dict[str, str]] = None,
) -> Run:
    """Runs one contender process to its end, sampling its peak RSS while it runs."""
    database = workdir / "bench.duckdb"
    env = {
        **os.environ,
        **(extra_env or {}),
        "RESEND_API_KEY": API_KEY,
        "RESEND_API_URL": sim.url,
        "DESTINATION__DUCKDB__CREDENTIALS": str(database),
        "DLT_DATA_DIR": str(workdir / "dlt"),
        "RUNTIME__DLTHUB_TELEMETRY": "false",
        "PYTHONPATH": code_path(REPO),
    }
    sim.call("POST", "reset-stats")
    peak = 0.0
    with tempfile.TemporaryFile("w+") as output:
        started = time.monotonic()
        process = subprocess.Popen(
            [part.format(db=database) for part in command],
            env=env,
            cwd=workdir,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        while process.poll() is None:
            peak = _peak_rss_mib(process.pid, peak)
            time.sleep(0.02)
        wall = time.monotonic() - started
        output.seek(0)
        text = output.read()
    if process.returncode != 0:
        print(f"  {command[-1]} failed: {text.strip().splitlines()[-1:]}", file=sys.stderr)
    requests = int(sim.call("GET", "stats").get("total", 0))
    return Run(wall, peak, requests, process.returncode == 0, text)


def table_is_correct(database: Path, truth: List[Dict[str, Any]]) -> bool:
    """The table holds exactly the API's imports, each with its current values."""
    expected = expected_records(truth)
    if not database.exists():
        return False
    with duckdb.connect(str(database), read_only=True) as con:
        present = {
            name
            for (name,) in con.execute(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_schema = 'resend' AND table_name = 'contact_imports'"
            ).fetchall()
        }
        select = ", ".join(c if c in present else "NULL" for c in COMPARED)
        rows = con.execute(f"SELECT id, {select} FROM resend.contact_imports").fetchall()
    loaded: Dict[str, Any] = {}
    for row in rows:
        values = list(row[1:])
        for index in (1, 2):  # created_at, completed_at: text in rest_api's table
            if isinstance(values[index], str):
                values[index] = parse_timestamp(values[index])
            if values[index] is not None:
                values[index] = values[index].astimezone(UTC)
        loaded[row[0]] = tuple(values)
    return len(rows) == len(loaded) and loaded == expected


def postgres_table_is_correct(dsn: str, workdir: Path, truth: List[Dict[str, Any]]) -> bool:
    checker = make_pipeline(
        dlt.destinations.postgres(credentials=dsn),
        pipeline_name="bench_check",
        pipelines_dir=str(workdir / "check"),
    )
    return differences(checker, truth) == []


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


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def report(
    imports: int,
    results: Dict[str, Results],
    quiet: tuple[int, float],
    limited: Optional[Dict[str, Any]],
    scaled: List[tuple[int, str, Run, Run]],
    baseline: Optional[str] = None,
) -> List[str]:
    """Markdown tables of the figures and the ratios the targets are stated in."""
    lines = [
        f"### Full sync of {imports:,} imports, then an incremental run (30 new, open ones"
        " progressed)",
        "",
        "| contender | full wall (s) | peak RSS (MiB) | requests | incremental wall (s) |"
        " incremental requests | correct after change |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, result in results.items():
        lines.append(
            f"| {name} | {_median([r.wall for r in result.full]):.2f}"
            f" | {max(r.peak_rss_mib for r in result.full + result.incremental):.0f}"
            f" | {result.full[-1].requests}"
            f" | {_median([r.wall for r in result.incremental]):.2f}"
            f" | {result.incremental[-1].requests}"
            f" | {'yes' if all(result.correct) else 'no'}"
            f"{'' if all(r.ok for r in result.full + result.incremental) else ' (failed)'} |"
        )
    ours, rest, hand = results[OURS], results[REST_API], results[HAND_LOOP]
    full_ours = _median([r.wall for r in ours.full])
    incremental_ratio = _median([r.wall for r in ours.incremental]) / _median(
        [r.wall for r in rest.incremental]
    )
    lines += [
        "",
        "| ratio | value | target |",
        "| --- | ---: | --- |",
        f"| full: ours / rest_api (jsonl) | {full_ours / _median([r.wall for r in rest.full]):.2f}"
        " | ≤ 0.5 |",
        f"| full: ours / hand loop | {full_ours / _median([r.wall for r in hand.full]):.2f}"
        " | ≤ 2 |",
        f"| incremental: ours / rest_api (jsonl) | {incremental_ratio:.2f} | ≤ 1.3 |",
        f"| peak RSS, ours (MiB) | {max(r.peak_rss_mib for r in ours.full):.0f} | ≤ 300 |",
        f"| requests, full sync: ours | {ours.full[-1].requests} | {-(-imports // 100)} |",
        f"| requests, run with nothing new or open: ours | {quiet[0]} | 1 |",
    ]
    if OURS_POSTGRES in results:
        on_postgres, inserts = results[OURS_POSTGRES], results[OURS_POSTGRES_INSERTS]
        full_postgres = _median([r.wall for r in on_postgres.full])
        lines += [
            f"| PostgreSQL full sync: csv / DuckDB | {full_postgres / full_ours:.2f}"
            f" ({full_postgres:.2f}s, {max(r.peak_rss_mib for r in on_postgres.full):.0f} MiB)"
            " | for information |",
            f"| PostgreSQL full sync: csv / insert_values |"
            f" {full_postgres / _median([r.wall for r in inserts.full]):.2f} | ≤ 0.8 keeps csv |",
        ]
    if limited:
        lines.append(
            f"| rate-limited (10/s, 5,000 imports): wall {limited['wall']:.2f}s,"
            f" {limited['requests']} requests, {limited['429s']} 429s, {limited['retries']} retries"
            f" | bound {limited['bound']:.2f}s | ≤ 1.1 x requests/10 + start-up, no 429 |"
        )
    if baseline is not None and baseline in results:
        before, after = results[baseline], ours
        lines += [
            "",
            f"| before ({baseline}) vs after (this tree), same run | before | after | after /"
            " before |",
            "| --- | ---: | ---: | ---: |",
        ]
        for label, pick in (
            ("full sync wall (s)", "full"),
            ("incremental wall (s)", "incremental"),
        ):
            was = _median([r.wall for r in getattr(before, pick)])
            now = _median([r.wall for r in getattr(after, pick)])
            lines.append(f"| {label} | {was:.2f} | {now:.2f} | {now / was:.2f} |")
        lines.append(
            f"| incremental requests | {before.incremental[-1].requests}"
            f" | {after.incremental[-1].requests} | |"
        )
        was_rss = max(r.peak_rss_mib for r in before.full)
        now_rss = max(r.peak_rss_mib for r in after.full)
        lines.append(f"| full sync peak RSS (MiB) | {was_rss:.0f} | {now_rss:.0f} | |")
    if scaled:
        lines += [
            "",
            "| imports | contender | first sync wall (s) | peak RSS (MiB) | --full-refresh wall (s)"
            " | peak RSS (MiB) | requests | ok |",
            "| ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for size, name, first, refresh in scaled:
            ok = "yes" if first.ok and refresh.ok else "FAILED"
            lines.append(
                f"| {size:,} | {name} | {first.wall:.2f} | {first.peak_rss_mib:.0f}"
                f" | {refresh.wall:.2f} | {refresh.peak_rss_mib:.0f} | {refresh.requests} | {ok} |"
            )
    if imports < 100_000:
        lines += [
            "",
            f"The time and memory targets are stated for 100,000 imports; at {imports:,} every"
            " contender's wall is mostly start-up, so these ratios say little.",
        ]
    return lines


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
