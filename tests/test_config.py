"""Settings resolved by dlt under `sources.resend_imports`; earlier sections still read."""

import json
import logging
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from resend_imports import config, options
from resend_imports.errors import ResendConfigError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config, "_warned", set())


def test_alert_rules_are_read_from_the_section_named_like_the_package(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SOURCES__RESEND_IMPORTS__ALERTS__FAILURE_RATE", "0.25")
    monkeypatch.setenv("SOURCES__RESEND_IMPORTS__ALERTS__OPEN_TOO_LONG", "false")

    rules = config.alert_rules()

    assert (rules.failure_rate, rules.open_too_long, rules.open_hours) == (0.25, False, 24.0)


LEGACY_CONFIG = """
[alerts]
failure_rate = 0.3
open_hours = 12.0
"""

READ_RULES_TWICE = """
import json, logging
logging.basicConfig(format="%(levelname)s %(message)s")
from resend_imports import config
first, second = config.alert_rules(), config.alert_rules()
print(json.dumps([[r.failure_rate, r.open_hours, r.since_hours] for r in (first, second)]))
"""


def test_an_earlier_versions_section_is_read_with_one_warning_naming_the_key_to_move(
    tmp_path: Path,
) -> None:
    (tmp_path / ".dlt").mkdir()
    (tmp_path / ".dlt" / "config.toml").write_text(LEGACY_CONFIG)
    env = dict(os.environ)  # PYTHONPATH: this checkout's code (conftest)

    done = subprocess.run(
        [sys.executable, "-c", READ_RULES_TWICE],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )

    assert json.loads(done.stdout) == [[0.3, 12.0, 24.0], [0.3, 12.0, 24.0]]
    warnings = done.stderr.strip().splitlines()
    assert len(warnings) == 2, warnings  # once per key, not once per read
    assert any(
        "alerts.failure_rate" in line and "SOURCES__RESEND_IMPORTS__ALERTS__FAILURE_RATE" in line
        for line in warnings
    )


def test_the_current_section_wins_over_an_earlier_one(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("ALERTS__FAILURE_RATE", "0.3")
    monkeypatch.setenv("SOURCES__RESEND_IMPORTS__ALERTS__FAILURE_RATE", "0.4")

    with caplog.at_level(logging.WARNING, logger="resend_imports"):
        assert config.alert_rules().failure_rate == 0.4
    assert caplog.records == []


def test_a_legacy_secret_is_read_and_its_warning_never_holds_the_value(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("SOURCES__RESEND__API_KEY", "re_legacy_secret_value")

    with caplog.at_level(logging.WARNING, logger="resend_imports"):
        value = config.legacy_value(config.SOURCE_SECTIONS, "api_key")

    assert value == "re_legacy_secret_value"
    assert "sources.resend.api_key" in caplog.text
    assert "re_legacy_secret_value" not in caplog.text


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("SOURCES__RESEND_IMPORTS__ALERTS__FAILURE_RATE", "lots", "failure_rate"),
        ("SOURCES__RESEND_IMPORTS__ALERTS__FAILURE_RATE", "5", "failure_rate"),
        ("SOURCES__RESEND_IMPORTS__ALERTS__OPEN_HOURS", "0", "open_hours"),
    ],
)
def test_a_bad_value_is_one_config_error_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, named: str
) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(ResendConfigError, match=named) as raised:
        config.alert_rules()

    assert "\n" not in str(raised.value)


def test_the_command_lines_overrides_win_and_are_checked_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SOURCES__RESEND_IMPORTS__ALERTS__FAILURE_RATE", "0.4")

    assert config.alert_rules({"failure_rate": 0.1}).failure_rate == 0.1
    with pytest.raises(ResendConfigError, match="failure_rate"):
        config.alert_rules({"failure_rate": 2.0})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("open_hours", "inf"),
        ("open_hours", "1e308"),  # a timedelta no date can be moved by
        ("since_hours", "nan"),
        ("since_hours", "inf"),
        ("since_hours", "-1"),
        ("failure_rate", "nan"),
    ],
)
def test_a_number_not_finite_or_beyond_ten_years_is_one_config_error_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(f"SOURCES__RESEND_IMPORTS__ALERTS__{name.upper()}", value)

    with pytest.raises(ResendConfigError) as raised:
        config.alert_rules()

    message = str(raised.value)
    assert message.startswith(f"alerts {name} must be "), message
    assert f"got {float(value)}" in message and "\n" not in message


def test_an_alert_setting_read_from_the_section_above_says_where_it_is_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """dlt falls back to `[sources.resend_imports]` for a key the alerts leave unset."""
    monkeypatch.setenv("SOURCES__RESEND_IMPORTS__OPEN_HOURS", "inf")

    with pytest.raises(ResendConfigError, match=r"else \[sources\.resend_imports\]"):
        config.alert_rules()


@pytest.mark.parametrize(
    ("span", "accepted", "refused"),
    [
        (options.SECONDS, [0, 0.5, 315_360_000], [-1, math.nan, math.inf, 1e308]),
        (options.TIMEOUT_SECONDS, [0.01, 30], [0, -0.0, math.nan, math.inf]),
        (options.RATE, [1e-9, 1], [0, 1.01, math.nan]),
        (options.DAYS, [0, 3650], [3650.5, -math.inf]),
    ],
)
def test_one_rule_refuses_what_is_not_finite_or_out_of_its_span(
    span: options.Span, accepted: list[float], refused: list[float]
) -> None:
    assert all(span.holds(value) for value in accepted)
    assert not any(span.holds(value) for value in refused)
