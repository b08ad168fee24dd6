"""DuckDB: the file a run writes, checked before any request, locked beside it, and its
faults in one line.

A path that is no DuckDB database, a file named like a dataset of the run (ambiguous
queries), a folder that does not exist or cannot be written, or a file locked by another
process, would fail the load after the API has been paged for nothing: `check` refuses the
first three, touching nothing but a read of the file's header, and `held_open`, which opens
the file for the run right after, the last. A first run that fails leaves no empty file
behind; a report opens the file read-only.
"""

import os
import re
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Tuple

import dlt
import duckdb

from resend_imports.errors import ResendConfigError
from resend_imports.names import dataset_names

from .base import NOTHING_LOST, DestinationKind, Target
from .locks import file_lock

# DuckDB's own catalogs beside the file's; a file named like one of these gets "_db" appended
BUILTIN_CATALOGS = ("system", "temp")
RENAMED_CATALOGS = ("system", "temp", "main")
# A DuckDB file starts with an 8-byte checksum, then these magic bytes
MAGIC = b"DUCK"
MAGIC_OFFSET = 8
PATH_HELP = "--duckdb or DESTINATION__DUCKDB__CREDENTIALS"
SETTINGS_HELP = (
    "DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG (global_config under"
    " [destination.duckdb.credentials]; or its local_config, pragmas)"
)
# DuckDB's refusal of a file another process holds (its only way of saying so)
_HELD = re.compile(r'Could not set lock on file "([^"]+)"(?:.*?\(PID (\d+)\))?')


class DuckDB(DestinationKind):
    name = "duckdb"

    def describe(self, credentials: Any) -> str:
        return f"DuckDB file {Path(str(credentials.database)).resolve()}"

    def check(self, target: Target, reading: bool) -> None:
        path = database_file(target)
        if path is None:
            return
        if reading and not path.exists():
            raise ResendConfigError(
                f"no DuckDB file at {path}: run `resend-imports sync` first, or name the file"
                f" with --duckdb PATH (or DESTINATION__DUCKDB__CREDENTIALS)"
            )
        if not reading:  # a report opens the file read-only: a read-only folder will do
            check_folder(path)
        check_database(path)
        check_names(target)

    def lock(self, target: Target, deadline: float) -> AbstractContextManager[None]:
        path = database_file(target)
        if path is None:
            return nullcontext()
        check_folder(path)  # the lock file goes beside the database
        return _locked(path, deadline)

    def read_only(self, target: Target) -> Any:
        """The file opened read-only: beside other readers, never a write."""
        credentials = target.credentials.copy()
        credentials.read_only = True
        credentials.on_resolved()  # a copy has no connection pool: this makes its own
        return dlt.destinations.duckdb(credentials)

    def held_open(self, target: Target) -> AbstractContextManager[None]:
        """One connection to the file for the block, opened as dlt opens its own (its pool,
        its settings); raises at once when another process holds the file.

        DuckDB keeps one open database per file in a process, so while this connection is
        open every connection dlt opens (the state, the source's reads, each load job) is a
        cursor on it, instead of starting DuckDB again (about 12 ms) and checkpointing the
        file when it closes; the file is checkpointed once, when the block ends. No other
        process can take the file between two load jobs either. Not with `statements` in
        the credentials (an ATTACH, a CREATE SECRET): dlt runs them on every connection it
        opens, and they would run twice on one open database.

        Raises:
            ResendConfigError: DuckDB refused a setting dlt applies on opening (`global_config`,
                `local_config`, `pragmas`), in its words.
        """
        path = database_file(target)
        credentials = target.credentials
        if path is None or credentials.statements:
            return nullcontext()
        return _borrowed(credentials.conn_pool, path)

    def fault(self, cause: BaseException, where: str) -> Optional[str]:
        # DuckDB reports a full disk as a plain IOException, with no errno
        if isinstance(cause, duckdb.Error) and "No space left on device" in str(cause):
            return (
                f"no space left on the device of the {where} (DuckDB could not write):"
                f" free some space and run again; {NOTHING_LOST}"
            )
        return None


KIND = DuckDB()  # what the registry (`destinations.kind_of`) takes of this module


@contextmanager
def _locked(path: Path, deadline: float) -> Iterator[None]:
    """The lock beside the file at `path`; a run that fails and created the file removes it
    again when it holds no table, under the lock (no other writer can have created it)."""
    with file_lock(lock_path(path), f"into the DuckDB file {path}", deadline):
        created = not path.exists()
        try:
            yield
        except BaseException:
            if created:
                remove_if_empty(path)
            raise


def remove_if_empty(path: Path) -> None:
    """Removes the DuckDB file at `path` (and its .wal) when it holds no table or view: what
    a first run that failed (a bad key, the API unreachable) created, and would otherwise
    leave for a report to find empty. Left as it is when DuckDB cannot open it read-only
    (another connection still has it) or it holds anything."""
    try:
        with duckdb.connect(str(path), read_only=True) as connection:
            row = connection.execute(
                "SELECT (SELECT count(*) FROM duckdb_tables() WHERE database_name ="
                " current_database()) + (SELECT count(*) FROM duckdb_views() WHERE NOT internal"
                " AND database_name = current_database())"
            ).fetchone()
    except duckdb.Error:
        return
    if row is None or row[0] != 0:
        return
    for created in (path, path.with_name(f"{path.name}.wal")):
        created.unlink(missing_ok=True)


@contextmanager
def _borrowed(pool: Any, path: Path) -> Iterator[None]:
    try:
        connection = pool.borrow_conn()
    except duckdb.ProgrammingError as exc:
        # how DuckDB refuses a setting's name or value (a file it cannot open is another kind)
        words = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ResendConfigError(
            f"DuckDB refused a setting on opening {path}: {words}; correct it in {SETTINGS_HELP}"
        ) from None
    try:
        yield
    finally:
        pool.return_conn(connection)


def database_file(target: Target) -> Optional[Path]:
    """The DuckDB file the run writes (resolved: symlinks, `..`), or None in memory."""
    database = str(getattr(target.credentials, "database", ""))
    if not database or database.startswith(":"):
        return None
    return Path(database).resolve()


def lock_path(database: Path) -> Path:
    """The lock file of the DuckDB file at `database` (a resolved path): `<file>.lock` beside it.

    Beside the database, because that folder is the one place every writer of the file
    shares, whatever its `DLT_DATA_DIR`, user or pipeline name; it must be writable anyway,
    since DuckDB writes its `.wal` there. The path is resolved (symlinks, `..`, relative to
    the current folder) before, so that every way of naming one file names one lock. The
    file is never removed: a run could otherwise lock a file another has just unlinked.
    """
    return database.with_name(f"{database.name}.lock")


def held_file(error: str) -> Optional[Tuple[str, Optional[str]]]:
    """The file, and the PID when DuckDB names it, of DuckDB's refusal to open a file another
    process holds; None for any other error."""
    held = _HELD.search(error)
    return (held[1], held[2]) if held else None


def holds_no_statement(connection: duckdb.DuckDBPyConnection, query: str) -> bool:
    """Whether DuckDB's parser finds no statement in `query` (empty, only comments or
    semicolons), which DuckDB runs as nothing and answers with no result at all (dlt then
    fails on it). A query DuckDB cannot parse is not one: running it says what is wrong."""
    try:
        return not connection.extract_statements(query)
    except duckdb.Error:
        return False


def is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, duckdb.OutOfMemoryException)


def check_folder(path: Path) -> None:
    """Fails in one line when DuckDB could not create or write `path` (and its .wal)."""
    if not path.parent.is_dir():
        raise ResendConfigError(
            f"the folder of the DuckDB file {path} does not exist: create it, or give another"
            f" path with {PATH_HELP}"
        )
    if not os.access(path.parent, os.W_OK | os.X_OK) or (
        path.exists() and not os.access(path, os.W_OK)
    ):
        raise ResendConfigError(
            f"cannot write the DuckDB file {path} (DuckDB writes it and a .wal beside it):"
            f" make the folder writable, or give another path with {PATH_HELP}"
        )


def check_database(path: Path) -> None:
    """Fails in one line when `path` exists but is no DuckDB database (an empty or text file,
    a folder), which DuckDB refuses with an error of its own only once it has opened it.

    The header is read here instead, so that nothing but a read touches the path: it is left
    exactly as it was (same bytes, same mtime). A path that does not exist passes: `sync`
    creates the file (`report` refuses it on its own).
    """
    if not path.exists():
        return
    header = b""
    if path.is_file():  # never open a folder, a FIFO (which would block) or a device
        try:
            with open(path, "rb") as file:
                header = file.read(MAGIC_OFFSET + len(MAGIC))
        except OSError as exc:
            raise ResendConfigError(
                f"cannot read the DuckDB file {path} ({exc.strerror}): make it readable, or"
                f" give another path with {PATH_HELP}"
            ) from None
    if header[MAGIC_OFFSET:] != MAGIC:
        raise ResendConfigError(
            f"{path} is not a DuckDB database ({_kind_of(path, header)}); it was left as it"
            f" is: give the path of a DuckDB file, or of one to create, with {PATH_HELP}"
        )


def _kind_of(path: Path, header: bytes) -> str:
    if path.is_dir():
        return "a folder"
    if not path.is_file():
        return "not a regular file"
    return "an empty file" if not header else "a file without DuckDB's header"


def check_names(target: Target) -> None:
    """Fails in one line when a dataset of the pipeline is named like a catalog of the DuckDB
    connection, which makes every query of `dataset.table` ambiguous.

    DuckDB names the file's catalog after the file (the resolved path: a symlink's target) and
    compares names case-insensitively; dlt writes the dataset under its normalized name and
    merges through a staging dataset named by the destination's `staging_dataset_name_layout`.
    Both names come from the resolved destination config, as dlt computes them. The name the
    path was given under counts too: a DuckDB version that does not resolve symlinks names
    the catalog after it.
    """
    pipeline = target.pipeline
    names = dataset_names(pipeline)  # they depend on the client's schema and config
    catalogs = _catalogs(str(target.credentials.database))
    datasets = {"dataset": names.dataset, "staging dataset": names.staging}
    for kind, dataset in datasets.items():
        clash, advice = catalogs.get(dataset.lower(), ("", ""))
        if not clash:
            continue
        given = (
            "" if dataset == pipeline.dataset_name else f" (from --dataset {pipeline.dataset_name})"
        )
        raise ResendConfigError(
            f"{clash} is named like the {kind} {dataset!r}{given}, which DuckDB cannot tell"
            f" apart in queries (it compares names case-insensitively); {advice}"
        )


def _catalogs(database: str) -> Dict[str, Tuple[str, str]]:
    """The catalogs of a connection to `database` (lower case), each with what it is and the
    way out of a clash with it."""
    files = {Path(database).resolve(), Path(database).absolute()}
    rename = "rename the file or pass another --dataset"
    catalogs = {_catalog_name(file).lower(): (f"the DuckDB file {file}", rename) for file in files}
    for name in BUILTIN_CATALOGS:
        catalogs[name] = (f"DuckDB's built-in catalog {name}", "pass another --dataset")
    return catalogs


def _catalog_name(file: Path) -> str:
    """The catalog DuckDB gives the file: its name up to the first dot (leading dots
    skipped), with "_db" appended to a name DuckDB keeps for itself."""
    name = next((part for part in file.name.split(".") if part), file.name)
    return f"{name}_db" if name.lower() in RENAMED_CATALOGS else name
