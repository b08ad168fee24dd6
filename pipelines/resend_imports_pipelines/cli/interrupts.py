"""Ctrl-C and SIGTERM, raised where the program is, and said in one line.

The standard library only: the command's package loads this before anything slow, so that
a Ctrl-C while the command starts ends in the same line (`resend_imports_pipelines.cli`).
"""

import _thread
import signal
import sys
import threading
from types import FrameType
from typing import Any, Callable, Optional

EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_TERMINATED = 143  # 128 + SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, like Ctrl-C's KeyboardInterrupt."""


def _interrupt_of(signum: int) -> KeyboardInterrupt:
    """What a signal raises where the program is: Ctrl-C's KeyboardInterrupt, or SIGTERM's."""
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


class Interrupts:
    """Ctrl-C and SIGTERM, raised where the program is.

    Python drops an exception raised while it runs a `__del__` (a connection pool the garbage
    collector happens to collect just then): the signal is remembered and raised again in the
    main thread until the run has ended on it, and the dropped one is not printed.

    DuckDB takes the KeyboardInterrupt raised while it runs a query and raises its own
    `RuntimeError: Query interrupted` instead (which dlt wraps again): a run that fails after
    a signal ends on the signal (`raised`), whatever the failure became, never on its text.
    """

    def __init__(self) -> None:
        self.received: Optional[int] = None
        self.handled = threading.Event()

    def install(self) -> Callable[[], None]:
        previous = {number: signal.signal(number, self._raise) for number in _SIGNALS}

        def restore() -> None:
            self.handled.set()
            for number, handler in previous.items():
                signal.signal(number, handler)

        return restore

    def raised(self) -> Optional[KeyboardInterrupt]:
        """What the signal received raised where it landed; None before a signal."""
        return None if self.received is None else _interrupt_of(self.received)

    def _raise(self, signum: int, frame: Optional[FrameType]) -> None:
        if self.handled.is_set():
            return  # the run is ending on the first one
        if self.received is None:
            self.received = signum
            threading.Thread(target=self._insist, daemon=True).start()
        raise _interrupt_of(signum)

    def _insist(self) -> None:
        while not self.handled.wait(0.5) and self.received is not None:
            _thread.interrupt_main(signal.Signals(self.received))


_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def quiet_about_interrupts(unraisable: Any) -> None:
    """`sys.unraisablehook`: an interruption dropped in a `__del__` is raised again (see
    `Interrupts`), not printed as a traceback."""
    if not isinstance(unraisable.exc_value, KeyboardInterrupt):
        sys.__unraisablehook__(unraisable)


def interrupted(raised: KeyboardInterrupt) -> int:
    """Says that nothing was half-committed; the exit code of the signal. The signal may
    land before the load, in it (dlt commits a package whole or not at all) or after it (the
    views, the delivery), and the line is true of each."""
    # ours for SIGTERM, or dlt's SignalReceivedException when dlt had taken the signal over
    terminated = isinstance(raised, Terminated) or (
        getattr(raised, "signal_code", None) == signal.SIGTERM
    )
    print(
        f"resend-imports: {'terminated (SIGTERM)' if terminated else 'interrupted (Ctrl-C)'}:"
        " nothing was half-committed; the table and its state are as the last load that ended"
        " left them (this run's, when it was cut short after its load: then its views and"
        " alert delivery are the next run's), and the next run loads or lists again what this"
        " one had not committed",
        file=sys.stderr,
    )
    return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
