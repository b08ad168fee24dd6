"""What a bucket (dlt's filesystem destination) can be left holding that would fail every
later run, put right by the run that finds it, under the run's writer lock.

- A kill between dlt's creation of a dataset's folder and its `init` marker: dlt treats a
  folder without the marker as new at every later run and fails to create it again (local
  buckets only: on object storage a folder is no object, and creating one never fails).
- A folder of dlt's own tables (its loads, the state, the schemas) a person deleted from a
  local bucket: dlt writes their files into it without creating it (it creates the tables'
  folders only with a new schema version), so every later load failed.
- An Iceberg table that gained a column no snapshot carries yet: dlt commits the new column
  (a new field, or the variant column of a field that changed type), then upserts the rows
  in other commits; pyiceberg's upsert (0.12) reads the rows it matches with the last
  snapshot's schema, which lacks the column, and fails on the incoming rows that have it
  (apache/iceberg-python#2467). An empty append is a snapshot with the new schema and
  changes no row; a load that failed on it is loaded once more (`load_again`).
"""

import logging
from typing import List

import dlt
from dlt.common.destination.exceptions import DestinationUndefinedEntity
from dlt.destinations.impl.filesystem.filesystem import FilesystemClient

from .errors import ResendConfigError
from .lake import table_format_of

logger = logging.getLogger("resend_imports")

DLT_OWN_FOLDER = "_dlt_loads"  # in every dataset dlt ever loaded into


def repair_local_bucket(pipeline: dlt.Pipeline) -> None:
    """The folders a local bucket's dataset must have, put right (see the module); nothing
    for any other destination."""
    client = pipeline.destination_client()  # not entered: that would open a database
    if not isinstance(client, FilesystemClient) or not client.config.is_local_filesystem:
        return
    _repair_dataset_folder(client)
    _repair_dlt_folders(client)


def _repair_dataset_folder(client: FilesystemClient) -> None:
    """Removes the dataset folder that a killed run created but never marked as dlt's;
    refuses, in one line, one with files in it (not ours to delete)."""
    files, folder = client.fs_client, client.dataset_path
    if not files.isdir(folder) or files.exists(client.init_file_path):
        return
    names = {str(path).rstrip("/").rsplit("/", 1)[-1] for path in files.ls(folder, detail=False)}
    if DLT_OWN_FOLDER in names:
        raise ResendConfigError(
            f"the bucket's folder {folder} holds a dlt dataset whose `init` file is missing:"
            " restore that file (from a backup of the bucket); nothing was changed"
        )
    if names:
        raise ResendConfigError(
            f"the bucket's folder {folder} holds files but is not a dlt dataset (no `init`"
            " file in it): move them away, or set another dataset name"
        )
    logger.warning(
        "removing the empty dataset folder %s: a killed run created it and never marked it"
        " as dlt's; this run creates it again",
        folder,
    )
    files.rmdir(folder)


def _repair_dlt_folders(client: FilesystemClient) -> None:
    """Creates again, with one WARNING, the folders of dlt's own tables that the dataset (one
    dlt marked as its own) lacks."""
    files = client.fs_client
    if not files.exists(client.init_file_path):
        return  # no dataset yet (dlt creates every folder with it, and `_repair_dataset_folder`)
    lacking = [
        name
        for name in client.schema.dlt_table_names()
        if not files.exists(client.get_table_dir(name).rstrip("/"))  # a file there: dlt says
    ]
    if not lacking:
        return
    logger.warning(
        "%s missing from the bucket's dataset folder %s (deleted by a person?): created again",
        ", ".join(lacking) + (" is" if len(lacking) == 1 else " are"),
        client.dataset_path.rstrip("/"),
    )
    for name in lacking:
        files.makedirs(client.get_table_dir(name), exist_ok=True)


def align_iceberg_snapshots(pipeline: dlt.Pipeline) -> List[str]:
    """Commits an empty snapshot to each Iceberg table whose schema has columns its last
    snapshot lacks; the tables it did that to."""
    client = pipeline.destination_client()  # not entered unless a bucket: no database opened
    if not isinstance(client, FilesystemClient):
        return []
    aligned: List[str] = []
    with client:
        for name in client.schema.data_table_names():
            if table_format_of(client, name) != "iceberg":
                continue
            try:
                table = client.load_open_table("iceberg", name)
            except DestinationUndefinedEntity:
                continue  # not in the bucket yet
            snapshot = table.current_snapshot()
            if snapshot is None or snapshot.schema_id in (None, table.schema().schema_id):
                continue
            table.append(table.schema().as_arrow().empty_table())
            aligned.append(name)
    if aligned:
        logger.warning(
            "the Iceberg table(s) %s gained columns that no snapshot has yet (pyiceberg's upsert"
            " fails on them): committed an empty snapshot with the new columns, no row changed",
            ", ".join(aligned),
        )
    return aligned
