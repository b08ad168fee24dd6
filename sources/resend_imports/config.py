"""Settings: one section, `sources.resend_imports`, resolved by dlt, read the same way by the
source and by the command line around it.

dlt resolves each typed spec (`@configspec`) from its providers: environment variables
(`SOURCES__RESEND_IMPORTS__...`), `.dlt/config.toml` and `secrets.toml`, Airflow variables.
Earlier versions read `[sources.resend]`, `[alerts]` and `[resend_imports]`: a value found
only there is still used, with one WARNING naming the key to move, so that an upgrade loses
no setting (and no secret is ever named with its value).
"""

import logging
from typing import Any, Dict, Mapping, Optional, Set, Tuple, TypeVar

import dlt
from dlt.common.configuration import configspec, resolve_configuration
from dlt.common.configuration.const import TYPE_EXAMPLES
from dlt.common.configuration.container import Container
from dlt.common.configuration.exceptions import ConfigurationValueError
from dlt.common.configuration.specs import BaseConfiguration
from dlt.common.configuration.specs.pluggable_run_context import PluggableRunContext
from dlt.common.configuration.utils import deserialize_value

from .errors import ResendConfigError
from .options import HOURS, LIMIT_HOURS, RATE

logger = logging.getLogger("resend_imports")

SECTION = "resend_imports"
SOURCE_SECTIONS: Tuple[str, ...] = ("sources", SECTION)
ALERTS_SECTIONS: Tuple[str, ...] = ("sources", SECTION, "alerts")

# dlt reads a key the alerts section leaves unset from the sections above it: a value there
# (`SOURCES__RESEND_IMPORTS__READ_TIMEOUT_SECONDS`) is the alerts' too, and their errors say so
ALERTS_FALLBACK = " (read under [sources.resend_imports.alerts], else [sources.resend_imports])"

# where earlier versions kept what now lives in each section
LEGACY_SECTIONS: Dict[Tuple[str, ...], Tuple[Tuple[str, ...], ...]] = {
    SOURCE_SECTIONS: (("sources", "resend"), ("resend_imports",)),
    ALERTS_SECTIONS: (("alerts",),),
}

_warned: Set[str] = set()

TConfiguration = TypeVar("TConfiguration", bound=BaseConfiguration)


def _key(sections: Tuple[str, ...], name: str) -> str:
    return ".".join((*sections, name))


def _env_name(key: str) -> str:
    return key.replace(".", "__").upper()


def legacy_value(sections: Tuple[str, ...], name: str, hint: Any = None) -> Any:
    """What an earlier version's section holds for `name` where it would win: in a provider
    (environment, secrets.toml, config.toml, ...) that comes before every one holding `name`
    under `sections` (None otherwise). Warns once per key that it should move.

    Provider by provider, so that a variable of an earlier version (`ALERTS__OPEN_HOURS`)
    still wins over the current section in a file, as variables win over files.
    """
    legacy = LEGACY_SECTIONS.get(sections, ())
    if not legacy:
        return None
    for provider in Container()[PluggableRunContext].providers.providers:
        if provider.get_value(name, hint or Any, None, *sections)[0] is not None:
            return None
        for old in legacy:
            value = provider.get_value(name, hint or Any, None, *old)[0]
            if value is not None:
                _warn(old, sections, name)
                return deserialize_value(_key(old, name), value, hint) if hint else value
    return None


def _warn(old: Tuple[str, ...], sections: Tuple[str, ...], name: str) -> None:
    old_key, new_key = _key(old, name), _key(sections, name)
    if old_key in _warned:
        return
    _warned.add(old_key)
    logger.warning(
        "the setting %s (%s) is read from a section this version no longer documents:"
        " move it to [%s] as %s (or %s)",
        old_key,
        _env_name(old_key),
        ".".join(sections),
        name,
        _env_name(new_key),
    )


def secret(sections: Tuple[str, ...], name: str) -> Any:
    """A secret that is not a source argument (a channel's URL), from `sections` or an earlier
    version's section."""
    value: Any = dlt.secrets.get(_key(sections, name))
    return value if value is not None else legacy_value(sections, name)


def source_arguments(arguments: Dict[str, Any], defaults: Mapping[str, Any]) -> Dict[str, Any]:
    """The source's arguments as dlt resolved them under `[sources.resend_imports]`; one left
    at its default takes what an earlier version's section holds for it, and a placeholder
    `dlt init` wrote (`<configure me>`) counts as unset."""
    resolved = {
        name: None if isinstance(value, str) and value in TYPE_EXAMPLES.values() else value
        for name, value in arguments.items()
    }
    for name, default in defaults.items():
        hint = type(default) if default is not None else None
        earlier = legacy_value(SOURCE_SECTIONS, name, hint)  # warns where it is read
        # what dlt resolved may already be that value (an environment default): they agree
        if earlier is not None and resolved.get(name) in (default, earlier):
            resolved[name] = earlier
    return resolved


def resolve(spec: TConfiguration, sections: Tuple[str, ...]) -> TConfiguration:
    """`spec` resolved by dlt under `sections`, then an earlier version's value wherever it
    would win (see `legacy_value`).

    Raises:
        ResendConfigError: a value that is not of its field's type, or out of its range.
    """
    try:
        spec = resolve_configuration(spec, sections=sections)
    except ConfigurationValueError as error:
        raise ResendConfigError(f"[{'.'.join(sections)}]: {error}") from None
    earlier = False
    for name, hint in spec.get_resolvable_fields().items():
        value = legacy_value(sections, name, hint if isinstance(hint, type) else None)
        if value is not None:
            setattr(spec, name, value)
            earlier = True
    if earlier:
        spec.call_method_in_mro("on_resolved")  # the checks again, on an earlier value
    return spec


@configspec
class AlertRules(BaseConfiguration):
    """The alert rules (`[sources.resend_imports.alerts]`); each rule can be switched off."""

    enabled: bool = True
    failed: bool = True
    high_failure_rate: bool = True
    failure_rate: float = 0.05
    open_too_long: bool = True
    open_hours: float = 24.0
    since_hours: float = 24.0
    malformed: bool = True

    def on_resolved(self) -> None:
        if not self.enabled:
            return
        RATE.check("alerts failure_rate", self.failure_rate, ALERTS_FALLBACK)
        LIMIT_HOURS.check("alerts open_hours", self.open_hours, ALERTS_FALLBACK)
        HOURS.check("alerts since_hours", self.since_hours, ALERTS_FALLBACK)


def alert_rules(overrides: Optional[Dict[str, Any]] = None) -> AlertRules:
    """The configured alert rules, `overrides` (the command line's flags) winning."""
    rules = resolve(AlertRules(), ALERTS_SECTIONS)
    for name, value in (overrides or {}).items():
        if name not in rules.get_resolvable_fields():
            raise ResendConfigError(f"alerts has no setting {name!r}")
        setattr(rules, name, value)
    rules.on_resolved()
    return rules
