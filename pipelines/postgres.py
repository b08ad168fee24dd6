"""PostgreSQL around a run: the advisory lock, and why the server cannot be used, in one line.

psycopg2 gives every connection failure the same type and no SQLSTATE, so the cause is
found by steps that each have their own type: the host name resolves (`socket.gaierror`),
the port accepts a TCP connection (`ConnectionRefusedError`, `TimeoutError`), the login is
accepted on the `postgres` database (then the configured database is missing or closed to
the user), and the server's answers carry SQLSTATEs from then on.
"""

import socket
from contextlib import closing, contextmanager
from typing import Any, Iterator, Optional, Sequence

import dlt
import psycopg2
import psycopg2.errors
import psycopg2.extensions

from sources.resend_imports.errors import ResendError

from .locking import describe_holder, holder_text, wait_for

CREDENTIALS_HELP = (
    "check DESTINATION__POSTGRES__CREDENTIALS (or [destination.postgres.credentials])"
)


class DestinationUnavailableError(ResendError):
    """The destination cannot be reached or used; nothing was extracted or changed."""


def credentials_of(pipeline: dlt.Pipeline) -> Any:
    """dlt's resolved PostgreSQL credentials (raises dlt's error naming a missing field)."""
    return pipeline.destination_client().config.credentials


def describe(credentials: Any) -> str:
    """host:port/database, never the password."""
    return f"PostgreSQL {credentials.host}:{credentials.port}/{credentials.database}"


def connect(credentials: Any, application_name: str) -> psycopg2.extensions.connection:
    """A connection of this run, or `DestinationUnavailableError` saying why there is none."""
    where = describe(credentials)
    timeout = float(credentials.connect_timeout or 15)
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
            f" {credentials.port}? Nothing was synced; run again when it is up"
        ) from None
    except TimeoutError:
        raise DestinationUnavailableError(
            f"{where}: no answer within {timeout:g} s (connect timeout): check the host, the"
            " network and firewalls. Nothing was synced; run again when it answers"
        ) from None
    except OSError as exc:
        raise DestinationUnavailableError(
            f"{where}: cannot reach the server ({exc.strerror}). Nothing was synced"
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
def advisory_lock(pipeline: dlt.Pipeline, keys: Sequence[int], deadline: float) -> Iterator[None]:
    """Holds `pg_advisory_lock` of every key, in the order given, on one connection of this
    run until the block ends."""
    credentials = credentials_of(pipeline)
    connection = connect(credentials, f"resend-imports sync, {holder_text()}")
    with closing(connection):
        _keep_session_alive(connection)
        for key in keys:
            _take_advisory_lock(connection, key, deadline, pipeline.dataset_name, credentials)
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

    def taken() -> str:
        return (
            f"another sync into {describe(credentials)} dataset {dataset} holds its lock"
            f" ({_lock_holder(connection, key)}); run again when it has finished, or wait for"
            " it with --wait SECONDS"
        )

    wait_for(take, deadline, taken)


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


def check(pipeline: dlt.Pipeline) -> None:
    """Connects once, so that an unreachable or refusing server is told in one line."""
    connect(credentials_of(pipeline), "resend-imports check").close()


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
