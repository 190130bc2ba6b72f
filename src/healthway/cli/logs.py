"""``healthway logs list`` and ``healthway logs show``."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from healthway.cli import JsonFlag, OrgOption, database_session, emit, logs_app
from healthway.domain.actors import CLI
from healthway.services import logs, organizations
from healthway.transports.views import log_views


@logs_app.command("list")
def list_logs(
    env: Annotated[str | None, typer.Option("--env", help="Only this environment")] = None,
    status: Annotated[str | None, typer.Option("--status", help="received, delivered or failed")] = None,
    source: Annotated[str | None, typer.Option("--source", help="Only this source ID")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=500)] = 50,
    org: OrgOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Logs, newest first."""
    with database_session() as session:
        organization = organizations.resolve(session, org)
        envs = (
            [organizations.environment(session, organization.id, env)]
            if env
            else organizations.environments(session, organization.id)
        )
        rows, _ = logs.list_logs(
            session, actor=CLI, environments=envs, filters=logs.LogFilter(source_id=source, status=status), limit=limit
        )
        views = log_views(session, rows, {e.id: e for e in envs})
    lines = [
        f"{v['received_at']}  {v['id']}  {v['environment']:<11} {v['transport']:<4} {v['status']:<9} "
        f"{v['data_model'] or v['message_type'] or '-'} {v['event_type'] or ''}"
        for v in views
    ]
    emit({"logs": views}, as_json=as_json, text="\n".join(lines) or "no logs")


@logs_app.command("show")
def show(log_id: Annotated[str, typer.Argument(help="Log ID")], as_json: JsonFlag = False) -> None:
    """One log with its deliveries, attempts and payload (the payload read is audited)."""
    with database_session() as session:
        log, environment = logs.get(session, actor=CLI, log_id=log_id)
        view: dict[str, Any] = log_views(session, [log], {environment.id: environment})[0]
        view |= logs.payload_fields(logs.read_payload(session, actor=CLI, log=log, environment=environment))
    text = "\n".join(f"{k}: {v}" for k, v in view.items() if k not in ("deliveries", "payload"))
    emit(view, as_json=as_json, text=f"{text}\n\n{view['payload']}")
