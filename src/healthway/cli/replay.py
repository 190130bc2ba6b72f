"""``healthway logs replay``"""

from __future__ import annotations

from typing import Annotated

import typer

from healthway.cli import JsonFlag, database_session, emit, logs_app
from healthway.domain.actors import CLI
from healthway.services import deliveries, replay
from healthway.storage.models import utcnow


@logs_app.command("replay")
def logs_replay(
    log_id: Annotated[str, typer.Argument(help="Log ID")],
    destination: Annotated[str | None, typer.Option("--destination", help="Only this destination ID")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Deliver a log again, as new deliveries of the same log (a running server picks them up)."""
    with database_session() as session:
        log, created = replay.replay(session, actor=CLI, log_id=log_id, destination_id=destination, now=utcnow())
        result = {"log_id": log.id, "deliveries": [deliveries.delivery_view(d, []) for d in created]}
    emit(result, as_json=as_json, text=f"Replaying log {log.id} to {len(created)} destination(s)")
