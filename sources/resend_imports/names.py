"""The dataset, its tables and their columns as the destination names them, for every
message that names them and every read that compares a catalog's columns with dlt's schema.

dlt normalizes names with the destination's naming convention (`--dataset my-resend` is the
schema `my_resend`) and names the staging dataset by `staging_dataset_name_layout`: a message
that named them as given would send a person looking for a schema that does not exist.
"""

from dataclasses import dataclass
from typing import Any, Iterable, List

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


def column_name_in_schema(capabilities: Any, spelled: str) -> str:
    """The name dlt's schema gives a column the catalog spells `spelled`: lower case, unless
    the destination tells identifiers apart by case and dlt would not spell it so."""
    folded = spelled.lower()
    if not capabilities.has_case_sensitive_identifiers:
        return folded
    return folded if capabilities.casefold_identifier(folded) == spelled else spelled


def sql_literal(text: str) -> str:
    """An account name as a SQL string literal (names are checked identifiers already)."""
    return "'" + text.replace("'", "''") + "'"


def selected_columns(names: Iterable[str], columns: List[str]) -> List[str]:
    """`names` to select, with NULL for those an older table does not have."""
    return [name if name in columns else f"NULL AS {name}" for name in names]
