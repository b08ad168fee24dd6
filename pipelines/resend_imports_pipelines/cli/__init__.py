"""The `resend-imports` command (`resend_imports_pipelines.cli:entry_point`).

Loading the command takes about half a second (dlt, DuckDB, Arrow), before `main` has its
signal handlers: a Ctrl-C then ends it in the same one line and exit code as later, not in
a traceback of the import. (`interrupts` needs the standard library only.)
"""

from .interrupts import interrupted

try:
    from .main import entry_point, main
except KeyboardInterrupt as exc:
    raise SystemExit(interrupted(exc)) from None

__all__ = ["entry_point", "main"]
