"""What the last run of the source did, read back from dlt's trace (the source writes its
report into the resource's custom metrics)."""

import dlt

from resend_imports import SyncReport
from resend_imports.settings import TABLE_NAME


def report_of(pipeline: dlt.Pipeline) -> SyncReport:
    """What the last run of the resource did, from dlt's resource metrics in the trace."""
    trace = pipeline.last_trace
    extract = trace.last_extract_info if trace is not None else None
    for steps in reversed(list(extract.metrics.values()) if extract is not None else []):
        for step in reversed(steps):
            resource = step["resource_metrics"].get(TABLE_NAME)
            if resource is not None and resource.custom_metrics:
                return SyncReport(**resource.custom_metrics)
    return SyncReport()
