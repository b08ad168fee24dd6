"""The dataset and its tables as the destination names them, for every message that names
them.

dlt normalizes names with the destination's naming convention (`--dataset my-resend` is the
schema `my_resend`) and names the staging dataset by `staging_dataset_name_layout`: a message
that named them as given would send a person looking for a schema that does not exist.
"""

from dataclasses import dataclass
from typing import Any

import dlt
from dlt.common.destination.client import DestinationClientDwhConfiguration
from dlt.common.normalizers.naming import NamingConvention


@dataclass(frozen=True)
class DatasetNames:
    dataset: str
    staging: str
    naming: NamingConvention

    def table(self, name: str) -> str:
        """`dataset.table`, both as the destination names them."""
        return f"{self.dataset}.{self.naming.normalize_table_identifier(name)}"


def names_of(client: Any, given: str) -> DatasetNames:
    """The names a destination job client (dlt's `JobClientBase`) writes under; `given`, the
    dataset name as given, where the destination has no datasets."""
    config, schema = client.config, client.schema
    if not isinstance(config, DestinationClientDwhConfiguration):
        return DatasetNames(given, given, schema.naming)
    return DatasetNames(
        config.normalize_dataset_name(schema),
        config.normalize_staging_dataset_name(schema),
        schema.naming,
    )


def dataset_names(pipeline: dlt.Pipeline) -> DatasetNames:
    """The names `pipeline` writes under (its destination's client; nothing is connected)."""
    return names_of(pipeline.destination_client(), pipeline.dataset_name)
