"""``healthway logs list`` and ``healthway logs show``."""

from __future__ import annotations

import base64
from typing import Annotated, Any

import typer

from healthway.cli import EnvFilter, JsonFlag, OrgOption, database_session, emit, logs_app
from healthway.domain import hl7
from healthway.domain.actors import CLI
from healthway.domain.messages import ContentType
from healthway.services import logs
from healthway.services.paging import EnvironmentScope


@logs_app.command("list")
def list_logs(
    env: EnvFilter = None,
    status: Annotated[str | None, typer.Option("--status", help="received, delivered or failed")] = None,
    source: Annotated[str | None, typer.Option("--source", help="Only this source ID")] = None,
    transport: Annotated[str | None, typer.Option("--transport", help="http, mllp or sftp")] = None,
    message_type: Annotated[
        str | None, typer.Option("--message-type", help="HL7v2 MSH-9: ADT^A01, ADT^* or ADT")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=500)] = 50,
    org: OrgOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Logs, newest first."""
    filters = logs.LogFilter(source_id=source, status=status, transport=transport, message_type=message_type)
    with database_session() as session:
        views = logs.list_page(session, actor=CLI, scope=EnvironmentScope(org, env), filters=filters, limit=limit).items
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
        view = logs.detail(session, actor=CLI, log_id=log_id)  # the operator may read every payload
    emit(view, as_json=as_json, text=render(view))


_HEADER = ("environment", "source_id", "transport", "content_type", "data_model", "event_type", "message_type")
_DETAILS = ("control_id", "received_at", "size", "sha256")


def render(view: dict[str, Any]) -> str:
    """A log for people: what it is, where each delivery stands with every attempt, then the payload (HL7v2
    decoded per its MSH-18, one segment per line). Fields without a value are left out."""
    lines = [f"Log {view['id']}  {_status(view)}"]
    lines += [f"  {key + ':':<14}{view[key]}" for key in (*_HEADER, *_DETAILS) if view.get(key) not in (None, "")]
    lines.append(
        f"Deliveries ({len(view['deliveries'])}):"
        if view["deliveries"]
        else "Deliveries: none (no subscription matched)"
    )
    for delivery in view["deliveries"]:
        waiting = f", next attempt {delivery['next_attempt_at']}" if delivery["status"] == "pending" else ""
        lines.append(f"  to destination {delivery['destination_id']}: {delivery['status']}{waiting}")
        lines += [
            f"    #{a['number']} {a['started_at']}  {a['outcome']}" + (f"  {a['detail']}" if a.get("detail") else "")
            for a in delivery["attempts"]
        ]
    if view["content_type"] == ContentType.HL7V2:
        raw = base64.b64decode(view["payload"]) if view.get("payload_encoding") else view["payload"].encode()
        return "\n".join([*lines, "Payload:", hl7.display_text(raw)])
    encoding = " (base64)" if view.get("payload_encoding") else ""
    return "\n".join([*lines, f"Payload{encoding}:", view["payload"]])


def _status(view: dict[str, Any]) -> str:
    """The stored status, spelled out while deliveries are still pending (a failing one is retrying)."""
    pending = [d for d in view["deliveries"] if d["status"] == "pending"]
    if view["status"] != "received" or not pending:
        return f"status: {view['status']}"
    retrying = sum(1 for d in pending if d["attempts"])
    return f"status: received ({len(pending)} delivery(ies) pending, {retrying} of them retrying after failed attempts)"
