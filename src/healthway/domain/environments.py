"""Every organization has exactly these three environments."""

from __future__ import annotations

from enum import StrEnum

from healthway.errors import UnknownEnvironment


class EnvironmentName(StrEnum):
    DEVELOPMENT = "development"
    STAGING = "staging"
    PRODUCTION = "production"


def parse_environment(name: str) -> EnvironmentName:
    try:
        return EnvironmentName(name)
    except ValueError:
        expected = ", ".join(e.value for e in EnvironmentName)
        raise UnknownEnvironment(f"unknown environment {name[:40]!r} (expected one of: {expected})") from None
