"""``/platform/v1/logs``: filter, inspect (payload only for roles that may read PHI, audited), count."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query

from healthway.services import logs, organizations
from healthway.transports.http.platform.deps import (
    ActorDep,
    Cursor,
    HealthwayDep,
    Limit,
    OrganizationParam,
    caller_organization,
)
from healthway.transports.views import log_views

router = APIRouter(tags=["logs"])


@router.get("/logs")
def list_logs(
    hw: HealthwayDep,
    actor: ActorDep,
    environment: str | None = Query(None, description="Only this environment (default: every readable one)"),
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
    with hw.db.read_session() as session:
        org = caller_organization(session, actor, organization)
        envs = (
            [organizations.environment(session, org.id, environment)]
            if environment
            else organizations.environments(session, org.id)
        )
        rows, next_cursor = logs.list_logs(
            session, actor=actor, environments=envs, filters=filters, cursor=cursor, limit=limit
        )
        return {"logs": log_views(session, rows, {e.id: e for e in envs}), "next_cursor": next_cursor}


@router.get("/logs/counts")
def count_logs(
    hw: HealthwayDep, actor: ActorDep, environment: str = Query(), organization: OrganizationParam = None
) -> dict[str, Any]:
    """How many logs of ``environment`` are in each status."""
    with hw.db.read_session() as session:
        env = organizations.environment(session, caller_organization(session, actor, organization).id, environment)
        return {"environment": env.name, "counts": logs.count_by_status(session, actor=actor, environment=env)}


@router.get("/logs/{log_id}")
def get_log(log_id: str, hw: HealthwayDep, actor: ActorDep) -> dict[str, Any]:
    """One log; ``payload`` is included only for roles that may read it there (and that read is audited)."""
    with hw.db.session() as session:
        log, environment = logs.get(session, actor=actor, log_id=log_id)
        view = log_views(session, [log], {environment.id: environment})[0]
        if logs.may_read_payload(session, actor, environment):
            view |= logs.payload_fields(logs.read_payload(session, actor=actor, log=log, environment=environment))
        return view
