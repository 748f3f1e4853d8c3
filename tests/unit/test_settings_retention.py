"""Retention is an age up to ten years, from a flag or the environment (``7d``, ``12h``)."""

from __future__ import annotations

import argparse

import pytest

from legato._errors import SettingsError
from legato.cli.times import parse_age
from legato.settings import Settings


@pytest.mark.parametrize(
    ("text", "seconds"), [("3600", 3600.0), ("90m", 5400.0), ("12h", 43200.0), ("7d", 604800.0)]
)
def test_retention_takes_seconds_or_a_span_from_the_environment(text: str, seconds: float) -> None:
    assert Settings.from_env({"LEGATO_RETENTION": text}).retention == seconds


def test_retention_of_a_week_or_a_year_is_accepted_from_the_flag() -> None:
    assert Settings.from_env({}, retention=parse_age("7d")).retention == 7 * 86400
    assert Settings.from_env({}, retention=parse_age("365d")).retention == 365 * 86400


@pytest.mark.parametrize("text", ["0", "-1d", "7w", "inf", "3651d", "soon"])
def test_a_retention_that_is_no_age_is_refused_naming_the_setting(text: str) -> None:
    with pytest.raises(SettingsError, match=r"(?i)retention"):
        Settings.from_env({"LEGATO_RETENTION": text})


def test_the_flag_names_what_is_wrong() -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="'7w' is not an age"):
        parse_age("7w")
