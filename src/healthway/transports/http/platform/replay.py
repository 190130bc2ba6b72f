"""``POST /platform/v1/logs/{id}/replay``"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from healthway.services import deliveries, replay
from healthway.transports.http.platform.deps import ActorDep, HealthwayDep

router = APIRouter(tags=["logs"])


class ReplayRequest(BaseModel):
    destination: str | None = Field(default=None, max_length=64, description="Only this destination")


@router.post("/logs/{log_id}/replay", status_code=201)
def replay_log(log_id: str, hw: HealthwayDep, actor: ActorDep, body: ReplayRequest | None = None) -> dict[str, Any]:
    """New deliveries of the same log, attempted at once; answers ``{"log_id", "deliveries"}``."""
    destination = body.destination if body else None
    with hw.db.session() as session:
        log, created = replay.replay(session, actor=actor, log_id=log_id, destination_id=destination, now=hw.clock())
        return {"log_id": log.id, "deliveries": [deliveries.delivery_view(d, []) for d in created]}
