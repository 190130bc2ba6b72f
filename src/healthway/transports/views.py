"""How objects look on the wire: one shape for the CLI's ``--json`` and the Platform API."""

from __future__ import annotations

from typing import Any

from healthway.storage.models import Environment, Source


def source_view(source: Source, environment: Environment) -> dict[str, Any]:
    return {
        "id": source.id,
        "name": source.name,
        "environment": environment.name,
        "created_at": source.created_at.isoformat(),
    }
