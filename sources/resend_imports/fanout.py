"""One run of the resource over every account: the destination checked once, then one
`Run` per account, concurrently, into one load package.

Each account is a run of its own: its own client (paced only by its own rate-limit headers),
its own state (`account_state`), and reads of its own rows only (`DestinationReader.account`).
The accounts are listed in threads (at most `ACCOUNT_WORKERS`, each with a destination
connection of its own) that hand their items to the resource through a bounded queue, so
memory stays flat however many accounts there are; dlt loads them all in one load, one
writer. An account whose part fails on the API or its own settings (a bad key, its API
down, its rate limit exhausted) ends its part: its state is not advanced, the others go
on, and its report carries the one-line reason (`SyncReport.error`). Anything else (the
destination failing, a bug) stops the whole run, as a run of one account always does.
"""

import logging
import queue
import threading
from contextlib import ExitStack, contextmanager
from typing import Any, Callable, Dict, Iterator, List, Optional

import dlt
from dlt.common.configuration.container import Container

from .accounts import DEFAULT_ACCOUNT, with_account
from .checks import Checked, check_destination
from .client import ResendClient
from .committed import running_pipeline
from .destination import DestinationReader
from .errors import DestinationReadError, ResendError
from .incremental import ACCOUNTS_KEY
from .legacy import adopt_legacy_state
from .options import RunOptions
from .run import Run
from .sync_report import SyncReport, total

logger = logging.getLogger("resend_imports")

ACCOUNT_WORKERS = 8  # accounts listed at once (and destination connections held)
_QUEUED_ITEMS = 4  # per worker: items waiting for dlt (bounded memory)
_PUT_EVERY_SECONDS = 0.2  # how soon a worker notices that the run stopped

_current = threading.local()  # the account a thread runs, for its log lines


class _AccountPrefix(logging.Filter):
    """Prefixes the log lines of a run of several accounts with the account's name."""

    def filter(self, record: logging.LogRecord) -> bool:
        account = getattr(_current, "account", None)
        if account is not None and not str(record.msg).startswith("account "):
            record.msg = f"account {account}: {record.msg}"
        return True


logger.addFilter(_AccountPrefix())


def account_state(root: Dict[str, Any], account: str) -> Dict[str, Any]:
    """The state of one account inside the resource's: `default`'s is the resource state
    itself (where a single key's state always was), the others' under `accounts`."""
    if account == DEFAULT_ACCOUNT:
        return root
    state: Dict[str, Any] = root.setdefault(ACCOUNTS_KEY, {}).setdefault(account, {})
    return state


def sync_contact_imports(
    clients: Dict[str, ResendClient], options: RunOptions, left_over_loaded: bool = False
) -> Iterator[Any]:
    """Every account's run (see `Run`), its rows tagged with its account; what each did
    lands in dlt's resource metrics (`SyncReport`, its `accounts`), with `left_over_loaded`
    (data an interrupted run left was loaded before this run listed)."""
    pipeline = running_pipeline()
    with ExitStack() as cleanup:  # also when the run fails or is interrupted
        reader = None
        if pipeline is not None:
            reader = cleanup.enter_context(DestinationReader(pipeline))
        root = dlt.current.resource_state()
        adopt_legacy_state(root)
        checked = Checked() if reader is None else check_destination(reader, root)
        states = {name: account_state(root, name) for name in clients}
        reports: List[SyncReport] = []
        if len(clients) == 1:  # in the calling thread: a run of one account fails as a whole
            ((name, client),) = clients.items()
            with _account_run(name, client, options, reader, states[name], checked) as run:
                for item in run.items():
                    yield with_account(item, name)
            reports.append(run.report)
        else:
            readers: List[Optional[DestinationReader]] = [reader]
            for _ in range(min(len(clients), ACCOUNT_WORKERS) - 1):
                extra = None if pipeline is None else DestinationReader(pipeline)
                readers.append(None if extra is None else cleanup.enter_context(extra))
            yield from _concurrent(clients, options, readers, states, checked, reports)
        report = total(reports)
        report.left_over_loaded = left_over_loaded
        dlt.current.resource_metrics().update(vars(report))


@contextmanager
def _account_run(
    name: str,
    client: ResendClient,
    options: RunOptions,
    reader: Optional[DestinationReader],
    stored: Dict[str, Any],
    checked: Checked,
) -> Iterator[Run]:
    """One account's run, its reads scoped to its rows; its scratch copy of the table, if
    it made one, released however the run ends."""
    if reader is not None:
        reader.account = name
    run = Run(client, options, reader, stored, checked, name)
    try:
        yield run
    finally:
        run.knowledge.close()


class _StoppedError(Exception):
    """The run stopped (another part failed, or dlt closed the resource)."""


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


_DONE = object()


def _concurrent(
    clients: Dict[str, ResendClient],
    options: RunOptions,
    readers: List[Optional[DestinationReader]],
    states: Dict[str, Dict[str, Any]],
    checked: Checked,
    reports: List[SyncReport],
) -> Iterator[Any]:
    """The accounts' runs in worker threads, one reader each; their items in the order
    they come."""
    waiting: queue.Queue[str] = queue.Queue()
    for name in clients:
        waiting.put(name)
    items: queue.Queue[Any] = queue.Queue(maxsize=_QUEUED_ITEMS * len(readers))
    stop = threading.Event()
    done: Dict[str, SyncReport] = {}

    def put(item: Any) -> None:
        while True:
            if stop.is_set():
                raise _StoppedError
            try:
                items.put(item, timeout=_PUT_EVERY_SECONDS)
                return
            except queue.Full:
                continue

    def work(reader: Optional[DestinationReader]) -> None:
        try:
            while not stop.is_set():
                try:
                    name = waiting.get_nowait()
                except queue.Empty:
                    return
                _current.account = name
                try:
                    done[name] = _in_thread(
                        name, clients[name], options, reader, states, checked, put
                    )
                finally:
                    _current.account = None
        except _StoppedError:
            pass
        except BaseException as error:  # noqa: BLE001  (handed to the resource's thread)
            stop.set()
            items.put(_Failed(error))
        finally:
            items.put(_DONE)

    # named with dlt's pool prefix: dlt's contexts (the load package's, the configuration's)
    # are then those of the thread that runs the resource
    prefix = Container.thread_pool_prefix()
    threads = [
        threading.Thread(target=work, args=(r,), name=f"{prefix}resend-account-{i}", daemon=True)
        for i, r in enumerate(readers)
    ]
    for thread in threads:
        thread.start()
    running = len(threads)
    try:
        while running:
            item = items.get()
            if item is _DONE:
                running -= 1
            elif isinstance(item, _Failed):
                raise item.error
            else:
                yield item
    finally:
        stop.set()
        while any(thread.is_alive() for thread in threads):
            try:
                items.get(timeout=_PUT_EVERY_SECONDS)  # free a worker blocked on a full queue
            except queue.Empty:
                pass
    reports.extend(done[name] for name in clients)


def _in_thread(
    name: str,
    client: ResendClient,
    options: RunOptions,
    reader: Optional[DestinationReader],
    states: Dict[str, Dict[str, Any]],
    checked: Checked,
    put: Callable[[Any], None],
) -> SyncReport:
    """One account's run in a worker: its items `put`, its report returned; a failure of
    the account's own ends its part with the reason in the report."""
    try:
        with _account_run(name, client, options, reader, states[name], checked) as run:
            for item in run.items():
                put(with_account(item, name))
        return run.report
    except DestinationReadError:
        raise  # the destination, not the account: the whole run stops
    except ResendError as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        logger.warning("failed, its state is not advanced (the other accounts load): %s", reason)
        report = SyncReport(status=options.status, account=name, error=reason)
        report.count_requests(client.stats)
        return report
