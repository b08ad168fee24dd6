"""dlt's filesystem destination holding Delta or Iceberg tables (a lakehouse): the bucket
checked before any request, one writer per bucket and dataset, and the formats' faults in
one line.

Neither format has a lock a run could take on object storage: both commit optimistically
(a second writer's commit fails, or on S3 without a locking provider may overwrite). One
writer is therefore arranged by the command line: a file lock in the bucket's folder for a
local (`file://`) bucket, which every writer of that folder shares, else a file lock in the
working folder keyed on the bucket and dataset, which holds on one machine only (the README
says what the user arranges across machines).
"""

import hashlib
import logging
import os
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlsplit, urlunsplit

from deltalake.exceptions import CommitFailedError, DeltaError
from pyiceberg.exceptions import CommitFailedException, CommitStateUnknownException

from resend_imports.errors import ResendConfigError

from .base import NOTHING_LOST, DestinationKind, Target
from .compaction import compact_delta_tables
from .locks import file_lock

logger = logging.getLogger("resend_imports")

BUCKET_HELP = "DESTINATION__FILESYSTEM__BUCKET_URL (or [destination.filesystem] bucket_url)"


class Filesystem(DestinationKind):
    name = "filesystem"

    def resolve(self, config: Any) -> Any:
        """The whole configuration: the bucket URL is what describes and locks the data."""
        return config

    def describe(self, credentials: Any) -> str:
        return f"bucket {shown_bucket(str(credentials.bucket_url))}"

    def check(self, target: Target, reading: bool) -> None:
        folder = local_folder(target)
        if folder is None:
            return  # a remote bucket: its credentials are tried by the load itself
        if reading:
            if not folder.is_dir():
                raise ResendConfigError(
                    f"no bucket folder at {folder}: run `resend-imports sync` first, or set"
                    f" {BUCKET_HELP}"
                )
            return
        existing = folder
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            raise ResendConfigError(
                f"cannot write the bucket folder {folder} ({existing} is not a writable"
                f" folder): make it writable, or set another {BUCKET_HELP}"
            )

    def lock(self, target: Target, deadline: float) -> AbstractContextManager[None]:
        dataset = target.pipeline.dataset_name
        folder = local_folder(target)
        bucket = shown_bucket(str(target.credentials.bucket_url))
        where = f"into {bucket} (dataset {dataset})"
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
            return file_lock(folder / f"{dataset}.resend_imports.lock", where, deadline)
        key = hashlib.sha256(f"{target.credentials.bucket_url}|{dataset}".encode()).hexdigest()
        lock = Path(target.pipeline.pipelines_dir) / f"filesystem-{key[:16]}.lock"
        return file_lock(lock, where, deadline)

    def fault(self, cause: BaseException, where: str) -> Optional[str]:
        if isinstance(cause, (CommitFailedError, CommitFailedException)):
            return (
                f"{where}: another writer committed to the same table during the run"
                f" ({type(cause).__name__}); run again when it has finished: {NOTHING_LOST}"
            )
        if isinstance(cause, (DeltaError, CommitStateUnknownException)):
            first_line = (str(cause).strip().splitlines() or [""])[0][:300]
            return f"{where}: the table format failed ({first_line}); {NOTHING_LOST}"
        return None

    def after_load(self, target: Target) -> None:
        """Delta tables compacted when they hold too many small files (see `compaction`);
        the load is done whatever happens here: a failure waits for the next run."""
        try:
            with target.pipeline.destination_client() as client:
                compact_delta_tables(client)
        except (DeltaError, OSError) as exc:
            logger.warning("Delta tables not compacted this run (the next tries again): %s", exc)


KIND = Filesystem()  # what the registry (`destinations.kind_of`) takes of this module


def shown_bucket(url: str) -> str:
    """The bucket URL without any `user:password@`."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def local_folder(target: Target) -> Optional[Path]:
    """The folder of a local (`file://` or plain path) bucket, resolved; None when remote."""
    config = target.credentials
    if not config.is_local_filesystem:
        return None
    return Path(config.make_local_path(config.bucket_url)).resolve()
