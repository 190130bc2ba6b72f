"""``/platform/v1/logs``: filter, inspect (payload only for roles that may read PHI, audited), count."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query

from healthway.services import logs
from healthway.services.paging import EnvironmentScope
from healthway.transports.http.platform.deps import (
    ActorDep,
    Cursor,
    EnvironmentFilter,
    HealthwayDep,
    Limit,
    OrganizationParam,
    listing,
)

router = APIRouter(tags=["logs"])


@router.get("/logs")
def list_logs(
    hw: HealthwayDep,
    actor: ActorDep,
    environment: EnvironmentFilter = None,
    source: str | None = None,
    transport: str | None = Query(None, pattern="^(http|mllp|sftp)$"),
    data_model: str | None = None,
    event_type: str | None = None,
    status: str | None = Query(None, pattern="^(received|delivered|failed)$"),
    since: datetime | None = None,
    until: datetime | None = None,
    q: str | None = Query(None, max_length=255, description="Text within the control id"),
    message_type: str | None = Query(None, max_length=100, description="HL7v2 MSH-9: ADT^A01, ADT^* or ADT"),
    organization: OrganizationParam = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """Logs, newest first, without payloads."""
    filters = logs.LogFilter(source, transport, data_model, event_type, status, since, until, q, message_type)
    scope = EnvironmentScope(organization, environment)
    with hw.db.read_session() as session:
        page = logs.list_page(session, actor=actor, scope=scope, filters=filters, cursor=cursor, limit=limit)
        return listing("logs", page)


@router.get("/logs/counts")
def count_logs(
    hw: HealthwayDep, actor: ActorDep, environment: str = Query(), organization: OrganizationParam = None
) -> dict[str, Any]:
    """How many logs of ``environment`` are in each status."""
    with hw.db.read_session() as session:
        return logs.counts(session, actor=actor, organization_id=organization, environment=environment)


@router.get("/logs/{log_id}")
def get_log(log_id: str, hw: HealthwayDep, actor: ActorDep) -> dict[str, Any]:
    """One log; ``payload`` is included only for roles that may read it there (and that read is audited)."""
    with hw.db.session() as session:
        return logs.detail(session, actor=actor, log_id=log_id)
