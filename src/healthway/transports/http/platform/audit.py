"""``/platform/v1/audit-events``: the organization's audit trail, newest first; org owners only."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query

from healthway.domain.permissions import Permission
from healthway.errors import InvalidRequest
from healthway.services import audit, authz
from healthway.storage.pagination import decode_cursor, encode_cursor
from healthway.transports.account_views import audit_event_view
from healthway.transports.http.platform.deps import (
    ActorDep,
    Cursor,
    HealthwayDep,
    Limit,
    OrganizationParam,
    caller_organization,
)

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
    with hw.db.session() as session:
        org = caller_organization(session, actor, organization)
        authz.require_org(session, actor, Permission.AUDIT_READ, org.id)
        events = audit.list_events(
            session,
            organization_id=org.id,
            actor=actor_filter,
            action=action,
            since=_utc(since),
            until=_utc(until),
            before_id=_before_id(cursor),
            limit=limit + 1,
        )
        more = len(events) > limit
        events = events[:limit]
        next_cursor = encode_cursor(events[-1].occurred_at, str(events[-1].id)) if more else None
        return {"audit_events": [audit_event_view(e) for e in events], "next_cursor": next_cursor}


def _before_id(cursor: str | None) -> int | None:
    """Event ids grow with time, so the id alone orders and pages the trail."""
    if not cursor:
        return None
    _, event_id = decode_cursor(cursor)
    if not event_id.isdigit():
        raise InvalidRequest("invalid cursor")
    return int(event_id)


def _utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)
