"""What installs from before the source took the package's name left under the name
`resend`: the pipeline's schema and the incremental state.

The source, its schema and its state are named `resend_imports` now. dlt keys a pipeline's
schemas and each source's state by the source's name, so without this an upgraded install
would start a second schema beside the old one (which stays the pipeline's default) and find
no state under the new name: a first run, listing everything again. Both are moved once,
each with one INFO line, and nothing is listed again. A destination restored to a copy from
before the upgrade still holds its state under the old name; `resource_state_of` reads it
there.
"""

import logging
from typing import Any, Dict, Mapping

import dlt
from dlt.common.configuration.container import Container
from dlt.common.pipeline import pipeline_state

from .settings import LEGACY_SOURCE_NAME, SOURCE_NAME, TABLE_NAME

logger = logging.getLogger("resend_imports")

ResourceState = Dict[str, Any]


def resource_state_of(whole: Mapping[str, Any]) -> ResourceState:
    """The `contact_imports` resource state inside a whole dlt pipeline state; under the
    source's earlier name when only an install from before the rename wrote it."""
    sources = whole.get("sources", {})
    for name in (SOURCE_NAME, LEGACY_SOURCE_NAME):
        state: ResourceState = sources.get(name, {}).get("resources", {}).get(TABLE_NAME, {})
        if state:
            return state
    return {}


def adopt_legacy_schema(pipeline: dlt.Pipeline) -> None:
    """Renames the pipeline's schema `resend` to `resend_imports`, keeping every table and
    column it learned, and makes it the default again (the schema dlt restores first). Where
    both exist (a working folder restored from a destination the old version loaded, then
    run once), the old one goes: the destination's tables and columns stay as they are, and
    the source's schema learns again what it meets. Runs before anything is extracted;
    nothing to do on a new install."""
    names = list(pipeline.schema_names)
    if LEGACY_SOURCE_NAME not in names:
        return
    with pipeline.managed_state():  # the schema names and the default are saved with it
        if SOURCE_NAME not in names:
            renamed = pipeline.schemas[LEGACY_SOURCE_NAME].clone(with_name=SOURCE_NAME)
            pipeline.schemas.save_schema(renamed)
        pipeline.schemas.remove_schema(LEGACY_SOURCE_NAME)
        pipeline.schema_names = sorted({*names, SOURCE_NAME} - {LEGACY_SOURCE_NAME})
        if pipeline.default_schema_name in (None, LEGACY_SOURCE_NAME):
            pipeline.default_schema_name = SOURCE_NAME  # type: ignore[assignment]  # dlt: None
    logger.info(
        "the pipeline's schema %r is now named %r (the source's name since this version)",
        LEGACY_SOURCE_NAME,
        SOURCE_NAME,
    )


def adopt_legacy_state(stored: Dict[str, Any]) -> None:
    """Moves the resource state an earlier version kept under `sources.resend` into `stored`
    (this version's, empty on the first run after the upgrade) and drops the old key, in the
    pipeline state this extract saves. Called inside the resource, where that state is
    writable."""
    state, writable = pipeline_state(Container())
    if not writable or state is None:
        return
    sources: Dict[str, Any] = state.get("sources", {})
    legacy = sources.pop(LEGACY_SOURCE_NAME, None)
    old = (legacy or {}).get("resources", {}).get(TABLE_NAME)
    if old and not stored:
        stored.update(old)
        logger.info(
            "the incremental state kept under sources.%s moves to sources.%s",
            LEGACY_SOURCE_NAME,
            SOURCE_NAME,
        )
