"""A throwaway PostgreSQL cluster on a free loopback port, for tests and the benchmark.

`initdb` runs as the `postgres` system user (PostgreSQL refuses root) into a temporary
folder, with password authentication; the server listens on 127.0.0.1 only and the folder
is removed when it stops. Debian's `postgresql` package provides the binaries (`.ci/run`
installs it when missing); without them `start` fails with a message, never a skip.
"""

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from contextlib import closing
from pathlib import Path
from typing import List, Optional

import psycopg2

SUPERUSER = "postgres"
SUPERUSER_PASSWORD = "throwaway-superuser-pw"
LOADER = "loader"
LOADER_PASSWORD = "Loader-pw-doNotLeak-7"
DATABASE = "analytics"


def _bin_dir() -> Path:
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)
    )
    for candidate in reversed(candidates):
        if (Path(candidate) / "initdb").exists():
            return Path(candidate)
    raise RuntimeError(
        "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin: install"
        " Debian's postgresql package (apt-get install postgresql; .ci/run does it)"
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class ThrowawayPostgres:
    """One PostgreSQL server; `start()`, `dsn()`, `stop_server()` / `start_server()`, `stop()`."""

    def __init__(self) -> None:
        self.bin_dir = _bin_dir()
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="resend-imports-pg-"))
        self.data_dir = self.folder / "data"
        self.log_file = self.folder / "server.log"
        self._as_postgres: List[str] = []
        if os.geteuid() == 0:
            account = pwd.getpwnam("postgres")
            os.chown(self.folder, account.pw_uid, account.pw_gid)
            self._as_postgres = ["runuser", "-u", "postgres", "--"]

    def _run(self, *command: str) -> None:
        result = subprocess.run(
            [*self._as_postgres, *command], capture_output=True, text=True, timeout=120
        )
        if result.returncode != 0:
            raise RuntimeError(f"{command[0]} failed: {result.stderr.strip() or result.stdout}")

    def start(self) -> "ThrowawayPostgres":
        password_file = self.folder / "pw"
        password_file.write_text(SUPERUSER_PASSWORD)
        if self._as_postgres:
            shutil.chown(password_file, "postgres")
        self._run(
            str(self.bin_dir / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            SUPERUSER,
            "--auth=scram-sha-256",
            f"--pwfile={password_file}",
            "-E",
            "UTF8",
            "--no-sync",
        )
        password_file.unlink()
        self.start_server()
        with closing(self.admin()) as connection, connection.cursor() as cursor:
            cursor.execute(f"CREATE ROLE {LOADER} LOGIN PASSWORD %s", (LOADER_PASSWORD,))
            cursor.execute(f"CREATE DATABASE {DATABASE} OWNER {LOADER}")
        return self

    def start_server(self) -> None:
        if self.data_dir.joinpath("PG_VERSION").exists() and self.is_running():
            return
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.folder}"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(
            str(self.bin_dir / "pg_ctl"),
            "-D",
            str(self.data_dir),
            "-o",
            options,
            "-l",
            str(self.log_file),
            "-w",
            "-t",
            "60",
            "start",
        )

    def is_running(self) -> bool:
        status = subprocess.run(
            [*self._as_postgres, str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "status"],
            capture_output=True,
            timeout=30,
        )
        return status.returncode == 0

    def start_if_stopped(self) -> None:
        """After a test that stopped the server."""
        if not self.is_running():
            self.start_server()

    def stop_server(self, mode: str = "fast") -> None:
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", mode, "stop")

    def stop(self) -> None:
        try:
            self.stop_server("immediate")
        except RuntimeError:
            pass  # already stopped
        shutil.rmtree(self.folder, ignore_errors=True)

    def admin(self, database: str = "postgres") -> "psycopg2.extensions.connection":
        connection = psycopg2.connect(
            host="127.0.0.1",
            port=self.port,
            user=SUPERUSER,
            password=SUPERUSER_PASSWORD,
            dbname=database,
        )
        connection.autocommit = True
        return connection

    def dsn(
        self,
        database: str = DATABASE,
        user: str = LOADER,
        password: Optional[str] = LOADER_PASSWORD,
        host: str = "127.0.0.1",
        port: Optional[int] = None,
    ) -> str:
        secret = f":{password}" if password is not None else ""
        return f"postgresql://{user}{secret}@{host}:{port or self.port}/{database}"

    def reset_database(self) -> None:
        """Drops and recreates the loader's database: a clean destination for the next test."""
        with closing(self.admin()) as connection, connection.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
            cursor.execute(f"CREATE DATABASE {DATABASE} OWNER {LOADER}")

    def wait_ready(self, seconds: float = 30.0) -> None:
        deadline = time.monotonic() + seconds
        while True:
            try:
                self.admin().close()
                return
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
