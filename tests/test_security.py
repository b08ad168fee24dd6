"""The API key never leaves the Authorization header: not in output, traces, state or files."""

import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

from resend_imports.http import shown_url
from resend_imports_pipelines.simulator import FaultPlan

from .conftest import API_KEY, Account, run_cli

DLT_COMMAND = str(Path(sys.executable).with_name("dlt"))


def files_containing(root: Path, secret: bytes) -> List[str]:
    """Every file below root whose bytes hold the secret (skipping the user's secrets.toml)."""
    return [
        str(path.relative_to(root))
        for path in root.rglob("*")
        if path.is_file() and path.name != "secrets.toml" and secret in path.read_bytes()
    ]


def dlt_pipeline_output(account: Account, *command: str) -> str:
    pipelines_dir = str(account.workdir / "dlt" / "pipelines")
    result = subprocess.run(
        [DLT_COMMAND, "pipeline", "--pipelines-dir", pipelines_dir, "resend_imports", *command],
        env={"PATH": "/usr/bin:/bin", "RUNTIME__DLTHUB_TELEMETRY": "false"},
        cwd=account.workdir,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr


@pytest.mark.parametrize(
    "key_from",
    [
        "RESEND_API_KEY",
        # the other sources of the key in `make reliability` (run by CI too)
        pytest.param("SOURCES__RESEND_IMPORTS__API_KEY", marks=pytest.mark.reliability),
        pytest.param("secrets.toml", marks=pytest.mark.reliability),
    ],
)
def test_key_appears_nowhere_after_good_and_failed_runs(account: Account, key_from: str) -> None:
    env = {"RESEND_API_KEY": ""}
    if key_from == "secrets.toml":
        (account.workdir / ".dlt").mkdir()
        (account.workdir / ".dlt" / "secrets.toml").write_text(
            f'[sources.resend_imports]\napi_key = "{API_KEY}"\n'
        )
    else:
        env[key_from] = API_KEY
    outputs = []
    good = run_cli(account, "--log-level", "DEBUG", "sync", env=env, key=None)
    assert good.returncode == 0, good.stderr
    outputs.append(good.stdout + good.stderr)

    account.store.advance(new=120, seconds=600)
    account.simulator.faults = FaultPlan(rate=1.0, kinds=("503",))
    failed = run_cli(
        account,
        "--log-level",
        "DEBUG",
        "sync",
        env={**env, "SOURCES__RESEND_IMPORTS__MAX_ATTEMPTS": "2"},
        key=None,
    )
    assert failed.returncode == 1 and "gave up after 2 attempts" in failed.stderr
    outputs.append(failed.stdout + failed.stderr)

    account.simulator.faults = FaultPlan()
    account.simulator.api_keys = {"re_rotated"}  # the key is now rejected: an auth error
    rejected = run_cli(account, "--log-level", "DEBUG", "sync", env=env, key=None)
    assert rejected.returncode == 1 and "rejected the API key" in rejected.stderr
    outputs.append(rejected.stdout + rejected.stderr)

    trace = dlt_pipeline_output(account, "trace", "-vv")
    outputs += [trace, dlt_pipeline_output(account, "info", "-v")]
    for text in outputs:
        assert API_KEY not in text
    if key_from != "RESEND_API_KEY":  # resolved by dlt: the trace names it, masked
        assert "`sources.resend_imports.api_key` = <secret>" in trace
    assert files_containing(account.workdir, API_KEY.encode()) == []
    assert account.duckdb_path.exists()


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://svc:PASSWORD@api.example.com/x", "http://svc:***@api.example.com/x"),
        (
            "postgresql://loader:PASSWORD@db:5432/analytics",
            "postgresql://loader:***@db:5432/analytics",
        ),
        ("https://TOKENPASSWORD@hooks.example.com", "https://***@hooks.example.com"),
        ("http://svc:PASS@WORD@api.example.com", "http://svc:***@api.example.com"),
        ("http://svc:PASS/WORD@api.example.com", "(not shown)"),
        ("https://api.resend.com", "https://api.resend.com"),
        ("warehouse9000", "warehouse9000"),
    ],
)
def test_a_url_is_shown_without_its_password(url: str, shown: str) -> None:
    assert shown_url(url) == shown


@pytest.mark.parametrize(
    ("args", "env", "shown"),
    [
        (
            ["sync"],
            {"RESEND_API_URL": "http://svc:PASSWORD@api.example.com"},
            "base_url 'http://svc:***@api.example.com' holds a user name or password",
        ),
        (
            ["sync"],
            {"RESEND_API_URL": "https://svc:PASSWORD@api.example.com"},
            "base_url 'https://svc:***@api.example.com' holds a user name or password",
        ),
        (
            ["report", "--destination", "postgresql://loader:PASSWORD@db:5432/analytics"],
            {},
            "unknown destination 'postgresql://loader:***@db:5432/analytics'",
        ),
        (
            ["sync"],
            {"SOURCES__RESEND_IMPORTS__PAGE_SIZE": "http://svc:PASSWORD@x.example.com"},
            "config value page_size = 'http://svc:***@x.example.com' is not a valid int",
        ),
    ],
)
def test_no_url_is_printed_with_its_password(
    account: Account, args: List[str], env: dict[str, str], shown: str
) -> None:
    result = run_cli(account, "--log-level", "DEBUG", *args, env=env)
    assert result.returncode in (1, 2) and "Traceback" not in result.stderr
    assert shown in result.stderr
    assert "PASSWORD" not in result.stdout + result.stderr
    assert account.requests() == 0
