"""The benchmark's contenders: the commands, the simulator process they run against, one
run of a contender (wall, peak RSS, requests) and whether the table it left is correct.

Every contender runs as its own process, so that its peak RSS is its own and no two share a
GIL; `--baseline COMMIT` contenders run the connector as it was at COMMIT, unpacked from git
history, with the imports of that tree.
"""

import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC
from io import BytesIO
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import dlt
import duckdb

from resend_imports.records import parse_timestamp
from resend_imports_pipelines.run import make_pipeline
from resend_imports_pipelines.simulator.verify import COMPARED, differences, expected_records

API_KEY = "re_bench_key"
REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
RESEND_IMPORTS = str(Path(sys.executable).with_name("resend-imports"))
OURS = "resend-imports"
REST_API = "rest_api (jsonl)"
HAND_LOOP = "hand loop"
DLT_FLOOR = "dlt floor"

CONTENDERS: Dict[str, List[str]] = {
    OURS: [RESEND_IMPORTS, "sync"],
    REST_API: [PYTHON, "-m", "benchmarks.rest_api_sync", "{db}", "jsonl"],
    HAND_LOOP: [PYTHON, "-m", "benchmarks.hand_loop", "{db}"],
    DLT_FLOOR: [PYTHON, "-m", "benchmarks.dlt_floor", "{db}"],
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
