"""PostgreSQL around a run: the advisory lock, why the server cannot be used, and its faults
during a run, each in one line.

psycopg2 gives every connection failure the same type and no SQLSTATE, so the cause is
found by steps that each have their own type: the host name resolves (`socket.gaierror`),
the port accepts a TCP connection (`ConnectionRefusedError`, `TimeoutError`), the login is
accepted on the `postgres` database (then the configured database is missing or closed to
the user), and the server's answers carry SQLSTATEs from then on: `42501` no privilege,
class `08` and `57P` a lost or restarting server, `53` out of resources.
"""

import hashlib
import socket
from contextlib import AbstractContextManager, closing, contextmanager
from typing import Any, Iterator, Optional

import dlt
import psycopg2
import psycopg2.errors
import psycopg2.extensions
from dlt.common.normalizers.naming.snake_case import NamingConvention as SnakeCaseNaming

from resend_imports.errors import ResendError
from resend_imports.names import dataset_names

from .base import NOTHING_LOST, DestinationKind, Target
from .locks import describe_holder, holder_text, wait_for

CREDENTIALS_HELP = (
    "check DESTINATION__POSTGRES__CREDENTIALS (or [destination.postgres.credentials])"
)


class DestinationUnavailableError(ResendError):
    """The destination cannot be reached or used; nothing was extracted or changed."""


class Postgres(DestinationKind):
    name = "postgres"

    def describe(self, credentials: Any) -> str:
        return describe(credentials)

    def check(self, target: Target, reading: bool) -> None:
        """A report connects once, so that an unreachable or refusing server is told in one
        line; a sync is told so by its lock, which connects first."""
        if reading:
            connect(target.credentials, "resend-imports check", reading=True).close()

    def lock(self, target: Target, deadline: float) -> AbstractContextManager[None]:
        return advisory_lock(target, deadline)

    def read_only(self, target: Target) -> Any:
        """Sessions whose transactions are read-only (`default_transaction_read_only`)."""
        credentials = target.credentials.copy()
        options = credentials.get_query().get("options", "")
        credentials.query = {
            **(credentials.query or {}),
            "options": f"{options} -c default_transaction_read_only=on".strip(),
        }
        return dlt.destinations.postgres(credentials)

    def fault(self, cause: BaseException, where: str) -> Optional[str]:
        if not isinstance(cause, psycopg2.Error):
            return None
        code = cause.pgcode or ""
        first_line = (str(cause).strip().splitlines() or [""])[0]
        if code == "42501":
            return (
                f"{where}: the user may not create or write the dataset's schema"
                f" ({first_line}); grant it (GRANT CREATE ON DATABASE ... TO ...) or create the"
                f" schema for it, and run again; {NOTHING_LOST}"
            )
        if code.startswith("53"):
            return f"{where}: the server is out of resources ({first_line}); {NOTHING_LOST}"
        if (
            code.startswith(("08", "57P"))
            or isinstance(cause, psycopg2.InterfaceError)
            or (isinstance(cause, psycopg2.OperationalError) and not code)
        ):
            return (
                f"{where}: lost the connection to the server during the run ({first_line});"
                f" run again when it is back: {NOTHING_LOST}"
            )
        return None


KIND = Postgres()  # what the registry (`destinations.kind_of`) takes of this module


def describe(credentials: Any) -> str:
    """host:port/database, never the password."""
    return f"PostgreSQL {credentials.host}:{credentials.port}/{credentials.database}"


def lock_key(pipeline: dlt.Pipeline) -> int:
    """A signed 64-bit key of the dataset, for `pg_advisory_lock`: one writer per dataset,
    whatever the pipeline name. The dataset name as dlt writes it by default (`Resend` and
    `resend-x` are the schemas `resend` and `resend_x`); a naming convention that keeps more
    names apart only makes one lock cover several schemas, never miss one."""
    return _key(f"resend_imports/dataset:{_normalized_dataset(pipeline)}")


def legacy_lock_key(pipeline: dlt.Pipeline) -> int:
    """The key of pipeline and dataset, the only one versions before the dataset's lock took.

    Taken as well (after the dataset's), so that during a rolling upgrade a run of an older
    version and one of this version, same pipeline and dataset, still exclude each other.
    """
    return _key(f"resend_imports:{pipeline.pipeline_name}:{_normalized_dataset(pipeline)}")


def _normalized_dataset(pipeline: dlt.Pipeline) -> str:
    return str(SnakeCaseNaming().normalize_identifier(pipeline.dataset_name))


def _key(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big", signed=True)


def connect(
    credentials: Any, application_name: str, reading: bool = False
) -> psycopg2.extensions.connection:
    """A connection of this run, or `DestinationUnavailableError` saying why there is none
    (a report's, `reading`, says nothing of syncing)."""
    where = describe(credentials)
    timeout = float(credentials.connect_timeout or 15)
    run_again = "Run again" if reading else "Nothing was synced; run again"
    try:
        socket.getaddrinfo(credentials.host, credentials.port)
    except socket.gaierror:
        raise DestinationUnavailableError(
            f"{where}: unknown host {credentials.host!r}; {CREDENTIALS_HELP}"
        ) from None
    try:
        socket.create_connection((credentials.host, credentials.port), timeout=timeout).close()
    except ConnectionRefusedError:
        raise DestinationUnavailableError(
            f"{where}: connection refused: is the server running and listening on port"
            f" {credentials.port}? {run_again} when it is up"
        ) from None
    except TimeoutError:
        raise DestinationUnavailableError(
            f"{where}: no answer within {timeout:g} s (connect timeout): check the host, the"
            f" network and firewalls. {run_again} when it answers"
        ) from None
    except OSError as exc:
        raise DestinationUnavailableError(
            f"{where}: cannot reach the server ({exc.strerror}). {run_again} when it answers"
        ) from None
    try:
        return _connect(credentials, credentials.database, application_name, timeout)
    except psycopg2.OperationalError as exc:
        refusal = _server_words(exc)
        raise DestinationUnavailableError(_login_failure(credentials, timeout, refusal)) from None


def _server_words(exc: psycopg2.OperationalError) -> str:
    """The server's reason (libpq's `FATAL:` line), which never holds the password."""
    for line in str(exc).splitlines():
        if "FATAL:" in line:
            return line.split("FATAL:", 1)[1].strip()
    return (str(exc).strip().splitlines() or ["no reason given"])[-1].strip()


def _connect(
    credentials: Any, database: str, application_name: str, timeout: float
) -> psycopg2.extensions.connection:
    """A connection made from dlt's own connection string (so that `sslmode` and every other
    option of it apply), with the database, name and timeouts of this use."""
    connection = psycopg2.connect(
        credentials.to_native_representation(),
        dbname=database,
        connect_timeout=max(1, int(timeout)),
        application_name=application_name[:63],
        keepalives=1,
        keepalives_idle=30,
    )
    connection.autocommit = True
    return connection


def _login_failure(credentials: Any, timeout: float, refusal: str) -> str:
    where = describe(credentials)
    try:
        maintenance = _connect(credentials, "postgres", "resend-imports check", timeout)
    except psycopg2.OperationalError:
        # psycopg2 gives a refused login no SQLSTATE: the server's own words say which
        return (
            f"{where}: the server refused the connection of user {credentials.username!r}"
            f" ({refusal}): a wrong password, an unknown user, no pg_hba.conf rule for this"
            f" host, or no free connection; {CREDENTIALS_HELP}"
        )
    with closing(maintenance), maintenance.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (credentials.database,))
        exists = cursor.fetchone() is not None
    if not exists:
        return (
            f"{where}: database {credentials.database!r} does not exist; create it"
            f" (CREATE DATABASE {credentials.database} OWNER {credentials.username}) or"
            " point DESTINATION__POSTGRES__CREDENTIALS at another one"
        )
    return (
        f"{where}: user {credentials.username!r} may not connect to database"
        f" {credentials.database!r}; GRANT CONNECT ON DATABASE {credentials.database}"
        f" TO {credentials.username}"
    )


@contextmanager
def advisory_lock(target: Target, deadline: float) -> Iterator[None]:
    """Holds `pg_advisory_lock` of the dataset's key, then of the legacy key (see
    `legacy_lock_key`), on one connection of this run until the block ends."""
    pipeline, credentials = target.pipeline, target.credentials
    dataset = dataset_names(pipeline).dataset  # as the server names it, for the message
    connection = connect(credentials, f"resend-imports sync, {holder_text()}")
    with closing(connection):
        _keep_session_alive(connection)
        for key in (lock_key(pipeline), legacy_lock_key(pipeline)):
            _take_advisory_lock(connection, key, deadline, dataset, credentials)
        yield


def _take_advisory_lock(
    connection: psycopg2.extensions.connection,
    key: int,
    deadline: float,
    dataset: str,
    credentials: Any,
) -> None:
    def take() -> bool:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", (key,))
            row = cursor.fetchone()
        return bool(row and row[0])

    def held() -> str:
        return (
            f"another sync into {describe(credentials)} dataset {dataset} holds its lock"
            f" ({_lock_holder(connection, key)})"
        )

    wait_for(take, deadline, held)


def _keep_session_alive(connection: psycopg2.extensions.connection) -> None:
    """The lock lives as long as its session: a server that ends idle sessions would free
    it in the middle of a run. (A transaction-pooling pgbouncer cannot keep it at all:
    connect the connector to PostgreSQL directly.)"""
    for setting in ("idle_session_timeout", "idle_in_transaction_session_timeout"):
        try:
            with connection.cursor() as cursor:
                cursor.execute(f"SET {setting} = 0")
        except psycopg2.errors.UndefinedObject:  # 42704: an older server without it
            pass


def _lock_holder(connection: psycopg2.extensions.connection, key: int) -> str:
    unsigned = key & 0xFFFFFFFFFFFFFFFF
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT a.application_name, a.client_addr, a.backend_start"
            " FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1"
            " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND l.classid::bigint = %s AND l.objid::bigint = %s",
            (unsigned >> 32, unsigned & 0xFFFFFFFF),
        )
        row: Optional[tuple[Any, ...]] = cursor.fetchone()
    return describe_holder(*row) if row else "holder unknown"
