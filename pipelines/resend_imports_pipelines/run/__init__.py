"""One sync around the source, as the command line, the DAG and the demo run it: the dlt
pipeline and its defaults, the writer lock, the run and its summary."""

from .lock import configured_wait_seconds, writer_lock
from .pipeline import DATASET_NAME, DEFAULT_DESTINATION, PIPELINE_NAME, make_pipeline
from .summary import SyncSummary
from .sync import (
    DestinationFaultError,
    StaleViewsAfterLoadError,
    deliver_alerts,
    refresh_views,
    run_sync,
)

__all__ = [
    "DATASET_NAME",
    "DEFAULT_DESTINATION",
    "PIPELINE_NAME",
    "DestinationFaultError",
    "StaleViewsAfterLoadError",
    "SyncSummary",
    "configured_wait_seconds",
    "deliver_alerts",
    "make_pipeline",
    "refresh_views",
    "run_sync",
    "writer_lock",
]
