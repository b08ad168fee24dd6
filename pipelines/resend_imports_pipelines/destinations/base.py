"""What the command line knows of a dlt destination, behind one small interface.

dlt loads into any destination; around a run the command line needs these things of it, each
answered by the destination's own module (`duckdb`, `postgres`), and by this base for any
other destination (dlt alone then): its credentials, resolved once per run (`Target`); a
description for people that never shows a password; the checks that fail in one line before
any request (`check`); the lock that keeps other writers of the same data out (`lock`); the
translation of its driver's faults during a run into one line (`fault`); the way a
report opens it without writing (`read_only`); where that spares work, the destination
kept open for a sync's extract and load (`held_open`); and its tables' upkeep after a load
(`after_load`). What makes a failed load succeed in the same run (DuckDB's memory limit
doubled) is the source's (`resend_imports.load_again`): it does the same for the packages an
interrupted run left, which it loads before the run.
"""

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, Optional

import dlt

NOTHING_LOST = (
    "nothing is lost: what was extracted stays in DLT_DATA_DIR and loads, or is listed again,"
    " on the next run"
)


class DestinationKind:
    """One dlt destination (by dlt's `destination_name`); the base stands for any other."""

    name = ""

    def resolve(self, config: Any) -> Any:
        """What a run keeps of the destination's resolved configuration: its credentials."""
        return config.credentials

    def describe(self, credentials: Any) -> str:
        """Where the data goes, for people (never a password); "" says no more than its name."""
        return ""

    def check(self, target: "Target", reading: bool) -> None:
        """Fails in one line, before any request, when the destination cannot take the run:
        a sync (`reading` False) or a report (`reading` True, nothing is created)."""

    def lock(self, target: "Target", deadline: float) -> AbstractContextManager[None]:
        """Excludes every other writer of the same data, whatever its working folder, user,
        pipeline name or machine, for the duration of the block; a run that fails leaves
        nothing behind that it created and left empty."""
        return nullcontext()

    def read_only(self, target: "Target") -> Any:
        """The destination (a dlt destination, or its name) as a reader that must never
        write opens it: a report."""
        return target.pipeline.destination

    def fault(self, cause: BaseException, where: str) -> Optional[str]:
        """One line for a fault of this destination's driver during a run, or None."""
        return None

    def after_load(self, target: "Target") -> None:
        """Upkeep of the tables after a successful load, under the run's lock."""

    def held_open(self, target: "Target") -> AbstractContextManager[None]:
        """Keeps the destination open for the block (a sync's extract and load, after
        `check`), where that spares the run work; the base holds nothing."""
        return nullcontext()


def destination_name(pipeline: dlt.Pipeline) -> str:
    """dlt's name of the pipeline's destination (`duckdb`, `postgres`...), "" without one."""
    destination: Any = pipeline.destination
    return str(getattr(destination, "destination_name", "") or "")


@dataclass(frozen=True)
class Target:
    """A pipeline's destination for one run: its kind, and its credentials resolved once.

    Credentials that do not resolve (a missing password) fail the step that needs them, in
    dlt's words, as dlt's own run would; a description never fails.
    """

    pipeline: dlt.Pipeline
    kind: DestinationKind
    resolved: Any  # the credentials, or the exception that resolving them raised

    @property
    def credentials(self) -> Any:
        if isinstance(self.resolved, Exception):
            raise self.resolved
        return self.resolved

    @property
    def where(self) -> str:
        """Where the data goes, for people: the DuckDB file, host:port/database, or dlt's
        name of the destination."""
        described = ""
        if not isinstance(self.resolved, Exception) and self.resolved is not None:
            described = self.kind.describe(self.resolved)
        return described or destination_name(self.pipeline)


def resolve_credentials(pipeline: dlt.Pipeline, kind: DestinationKind) -> Any:
    """dlt's resolved credentials of the destination (as `kind` keeps them), or the exception
    resolving raised."""
    try:
        return kind.resolve(pipeline.destination_client().config)
    except Exception as exc:  # noqa: BLE001  (raised again by the step that needs them)
        return exc
