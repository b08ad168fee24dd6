"""Every `sh` block of the README, run as pasted from the repository root after `make install`,
against the bundled simulator (and a throwaway PostgreSQL server for its PostgreSQL block)."""

import os
import re
import subprocess
from pathlib import Path
from typing import Any, Dict, List

from .conftest import API_KEY, Account
from .throwaway_postgres import ThrowawayPostgres, free_port

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
# lines not run here, and where they are run instead
RUN_ELSEWHERE = {
    "make test": "it is this very suite",
    "dlt init resend_imports": "tests/test_dlt_init.py runs it in an empty dlt project",
    "pip install -r requirements.txt": "tests/test_dlt_init.py (the dlt init block)",
    "python resend_imports_pipeline.py": "tests/test_dlt_init.py (the dlt init block)",
}
PLACEHOLDER_DSN = "postgresql://loader:PASSWORD@db.example.com:5432/analytics"


def shell_blocks() -> List[str]:
    return re.findall(r"^```sh\n(.*?)^```", README.read_text(), flags=re.M | re.S)


def runnable(block: str) -> str:
    return "\n".join(
        line for line in block.splitlines() if not any(cmd in line for cmd in RUN_ELSEWHERE)
    )


def repository_root_copy(root: Path) -> Path:
    """The repository root as a user sees it (the installed `.venv` included), as links, so
    that what the commands write lands in a temporary folder."""
    root.mkdir()
    for entry in REPO.iterdir():
        if entry.suffix not in (".duckdb", ".wal") and entry.name not in (".git", ".pytest_cache"):
            link = root / entry.name
            link.symlink_to(entry)
            # make compares the links' own times: a new link would look like a changed
            # pyproject.toml and reinstall the shared .venv from this folder
            target = entry.stat()
            os.utime(link, ns=(target.st_atime_ns, target.st_mtime_ns), follow_symlinks=False)
    up_to_date = subprocess.run(["make", "-q", "install"], cwd=root, capture_output=True)
    assert up_to_date.returncode == 0, "run `make install` in the repository first"
    return root


def run_block(script: str, root: Path, env: Dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_the_readme_has_the_blocks_this_test_knows() -> None:
    blocks = shell_blocks()
    assert len(blocks) == 5
    assert all(runnable(block).strip() for block in blocks if "dlt init" not in block)


def test_every_readme_shell_block_works_as_pasted_in_one_terminal(
    make_account: Any, tmp_path: Path, postgres: ThrowawayPostgres
) -> None:
    account: Account = make_account(imports=400, stuck=2)
    root = repository_root_copy(tmp_path / "resend-imports")
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("RESEND_", "DESTINATION__", "SOURCES__", "DLT_"))
    }
    env.update(HOME=str(tmp_path / "home"), DLT_DATA_DIR=str(tmp_path / "dlt"))
    env["RESEND_API_URL"] = account.url  # the real Resend is not reachable from here
    pasted = "\n".join(runnable(block) for block in shell_blocks())
    script = (
        pasted.replace("re_...", API_KEY)
        .replace(PLACEHOLDER_DSN, postgres.dsn())
        .replace("8080", str(free_port()))
    )
    # a failed line must not leave the simulator started in the background running
    result = run_block("trap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n" + script, root, env)
    assert result.returncode == 0, f"{script}\n---\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    assert (root / "demo.duckdb").exists()  # make demo
    assert account.differences(root / "resend_imports.duckdb") == []  # real use, on DuckDB
    (tmp_path / "check").mkdir()
    check = tmp_path / "check"
    on_postgres = Account(account.store, account.simulator, account.url, check, postgres)
    assert on_postgres.differences() == []  # the PostgreSQL block
    assert "synced 10,000 contact imports" in result.stdout  # the simulator by hand
    assert "daily summary" in result.stdout or "day (UTC)" in result.stdout  # its report
