"""Load packages that a killed run left half-moved between dlt's folders, put right.

dlt extracts a package into `normalize/extracted/<id>`, normalizes it into `load/new/<id>`,
renames that to `load/normalized/<id>` and only then deletes the extracted copy. A kill
between two of those steps leaves a copy that every later run trips over (dlt normalizes the
extracted copy again, and cannot rename it onto the normalized one: `Directory not empty`).
None of the copies removed here has started loading: a package in `load/new` was never
complete, and an extracted copy whose normalized package exists is a leftover. Nothing is
lost: the normalized package still loads, and anything else is extracted again from the
state committed in the destination.
"""

import logging

import dlt

logger = logging.getLogger("resend_imports")


def repair_package_storage(pipeline: dlt.Pipeline) -> None:
    """Deletes the half-moved copies of load packages, with a WARNING for each."""
    # dlt has no public API for these folders
    load_storage = pipeline._get_load_storage()
    normalize_storage = pipeline._get_normalize_storage()
    if not (load_storage.is_storage_ready() and normalize_storage.is_storage_ready()):
        return
    normalized = set(load_storage.normalized_packages.list_packages())
    for load_id in load_storage.new_packages.list_packages():
        logger.warning(
            "discarding load package %s: a killed run left it half normalized; it is"
            " normalized again or extracted again",
            load_id,
        )
        load_storage.new_packages.delete_package(load_id)
    for load_id in normalize_storage.extracted_packages.list_packages():
        if load_id in normalized:
            logger.warning(
                "discarding the extracted copy of load package %s: it was normalized already"
                " (a killed run left both); the normalized package loads",
                load_id,
            )
            normalize_storage.extracted_packages.delete_package(load_id)
