"""What a run finds the destination holding before it trusts its state: the pipeline that
runs the source, the state committed with the data, and the health of the table (read by
`destination.DestinationReader`, checked by `checks`)."""

from typing import List, NamedTuple, Optional

import dlt
from dlt.common.configuration.container import Container
from dlt.common.pipeline import PipelineContext

from .legacy import ResourceState


def running_pipeline() -> Optional[dlt.Pipeline]:
    """The pipeline that runs the source, or None when it runs outside one (a test, a list)."""
    context = Container()[PipelineContext]
    if not context.is_active():
        return None
    pipeline: dlt.Pipeline = context.pipeline()  # type: ignore[assignment]
    return pipeline if pipeline.destination is not None else None


class Committed(NamedTuple):
    """What the destination holds of this source's state."""

    known: bool  # False: the destination keeps no state (no state sync there)
    state: ResourceState  # empty when the dataset holds none
    empty: bool  # no dataset or state table at all: no table to read either


class TableHealth(NamedTuple):
    """What the table holds now, to check the state against."""

    columns: List[str]  # empty: the table does not exist
    live: Optional[int]  # rows not marked deleted; None when the table does not exist
