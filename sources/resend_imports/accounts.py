"""Several Resend accounts in one table: which accounts a run syncs, and their rows tagged.

Resend's rate limit is per team, and a company often has several (per product, region or
client). Each configured account (`[sources.resend_imports.accounts]`, name = API key) is
synced by the same run into the same tables, its rows keyed by (`account`, id) so that an
import can never land under another account's row. A single key (`api_key`,
`RESEND_API_KEY`) is one account named `default`, which is also what the rows of a table
loaded before accounts existed become (`checks`).
"""

import json
import re
from typing import Any, Dict, Iterable, Mapping, Optional, Sequence

import pyarrow as pa
from dlt.extract.items import DataItemWithMeta

from .errors import ResendConfigError

DEFAULT_ACCOUNT = "default"
ACCOUNT_COLUMN = "account"
ACCOUNT_HINT: Any = {ACCOUNT_COLUMN: {"data_type": "text", "nullable": False}}
# a short identifier: it names state keys, log lines and rows, never holds a secret
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,39}")


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        shown = name[:40] if isinstance(name, str) else type(name).__name__
        raise ResendConfigError(
            f"account name {shown!r} is not a short identifier (a letter, then up to 39"
            " letters, digits, _ or -): rename it under [sources.resend_imports.accounts]"
        )
    return name


def configured_accounts(accounts: Any, api_key: str) -> Dict[str, str]:
    """Account name -> API key: the `accounts` mapping (a TOML table, or JSON in a variable)
    when there is one, else the single key as the account `default` (possibly empty: the run
    then fails in one line when it starts)."""
    if isinstance(accounts, str):
        try:
            accounts = json.loads(accounts) if accounts.strip() else None
        except ValueError:
            raise ResendConfigError(
                "accounts must be a JSON object of account name to API key (e.g."
                ' SOURCES__RESEND_IMPORTS__ACCOUNTS=\'{"acme": "re_..."}\')'
            ) from None
    if accounts is None:
        return {DEFAULT_ACCOUNT: api_key}
    if not isinstance(accounts, Mapping) or not accounts:
        raise ResendConfigError(
            "accounts must be a table of account name = API key under"
            " [sources.resend_imports.accounts] (or a JSON object), with at least one account"
        )
    keys: Dict[str, str] = {}
    named: Dict[str, str] = {}  # key -> the first name it is configured under
    for name, key in accounts.items():
        if not isinstance(key, str):
            raise ResendConfigError(f"the API key of account {check_name(name)} is not text")
        keys[check_name(name)] = key
        first = named.setdefault(key.strip(), name)
        if first != name and key.strip():  # an empty key fails on its own when the run starts
            raise ResendConfigError(
                f"accounts {first} and {name} have the same API key: every import of that"
                " Resend account would load twice, once under each name, and alert twice;"
                " keep one of the names under [sources.resend_imports.accounts] (a key moved"
                " to a new name: remove the old one)"
            )
    return keys


def selected(keys: Dict[str, str], names: Optional[Sequence[str]]) -> Dict[str, str]:
    """The accounts a run syncs: those `names` (the command line's `--account`), or all."""
    if not names:
        return keys
    unknown = [name for name in names if name not in keys]
    if unknown:
        raise ResendConfigError(
            f"no account named {', '.join(unknown)} is configured (configured:"
            f" {', '.join(sorted(keys))})"
        )
    return {name: keys[name] for name in dict.fromkeys(names)}


def with_account(item: Any, account: str) -> Any:
    """A dlt item of any of the source's tables with each row's `account` set."""
    if isinstance(item, DataItemWithMeta):
        return DataItemWithMeta(item.meta, with_account(item.data, account))
    if isinstance(item, pa.Table):
        if ACCOUNT_COLUMN in item.column_names:
            item = item.drop_columns([ACCOUNT_COLUMN])
        field = pa.field(ACCOUNT_COLUMN, pa.string(), nullable=False)
        return item.append_column(field, pa.array([account] * item.num_rows, pa.string()))
    rows: Iterable[Any] = item if isinstance(item, list) else [item]
    for row in rows:
        row[ACCOUNT_COLUMN] = account
    return item
