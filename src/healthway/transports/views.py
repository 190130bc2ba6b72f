"""How objects look on the wire: one shape for the CLI's ``--json`` and the Platform API."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from healthway.services import deliveries
from healthway.storage.models import Environment, Log, Source


def source_view(source: Source, environment: Environment) -> dict[str, Any]:
    return {"id": source.id, "name": source.name, "environment": environment.name}  # exactly DESIGN §6


def log_view(log: Log, environment: Environment, deliveries: list[dict[str, Any]]) -> dict[str, Any]:
    """DESIGN §6's log JSON (without the payload)."""
    return {
        "id": log.id,
        "environment": environment.name,
        "source_id": log.source_id,
        "transport": log.transport,
        "content_type": log.content_type,
        "data_model": log.data_model,
        "event_type": log.event_type,
        "message_type": log.message_type,
        "control_id": log.control_id,
        "sha256": log.sha256,
        "size": log.size,
        "received_at": log.received_at.isoformat(),
        "status": log.status,
        "test": log.test,
        "deliveries": deliveries,
    }


def log_views(session: Session, logs: Sequence[Log], environments: dict[str, Environment]) -> list[dict[str, Any]]:
    """Several logs with their deliveries and attempts (a fixed number of queries)."""
    by_log = deliveries.views_for_logs(session, [log.id for log in logs])
    return [log_view(log, environments[log.environment_id], by_log[log.id]) for log in logs]
