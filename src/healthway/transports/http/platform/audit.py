"""``/platform/v1/audit-events``: the organization's audit trail, newest first; org owners only."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query

from healthway.services import audit
from healthway.transports.http.platform.deps import ActorDep, Cursor, HealthwayDep, Limit, OrganizationParam, listing

router = APIRouter(tags=["audit"])
Time = Annotated[datetime | None, Query(description="ISO 8601; without a zone it is UTC")]


@router.get("/audit-events")
def list_audit_events(
    hw: HealthwayDep,
    actor: ActorDep,
    organization: OrganizationParam = None,
    actor_filter: Annotated[str | None, Query(alias="actor", description="e-mail, client_id, api_key or cli")] = None,
    action: Annotated[str | None, Query(description="e.g. user:login, role:assign")] = None,
    since: Time = None,
    until: Time = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """Events with ``since <= occurred_at < until``, newest first."""
    filters = audit.EventFilter(actor=actor_filter, action=action, since=_utc(since), until=_utc(until))
    with hw.db.session() as session:
        page = audit.list_page(
            session, actor=actor, organization_id=organization, filters=filters, cursor=cursor, limit=limit
        )
        return listing("audit_events", page)


def _utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)
