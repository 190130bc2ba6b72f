"""``healthway subscription ...``"""

from __future__ import annotations

from typing import Annotated

import typer

from healthway.cli import JsonFlag, OrgOption, app, database_session, emit
from healthway.domain.actors import CLI
from healthway.errors import NotFound
from healthway.services import destinations, sources, subscriptions
from healthway.services.paging import EnvironmentScope, every

subscription_app = typer.Typer(help="Subscriptions (source → destination).", no_args_is_help=True)
app.add_typer(subscription_app, name="subscription")


@subscription_app.command("create")
def subscription_create(
    source: Annotated[str, typer.Option("--source", help="Source ID")],
    destination: Annotated[str, typer.Option("--destination", help="Destination ID")],
    data_model: Annotated[list[str] | None, typer.Option("--data-model", help="Only this data model")] = None,
    event_type: Annotated[list[str] | None, typer.Option("--event-type", help="Only this event type")] = None,
    message_type: Annotated[
        list[str] | None, typer.Option("--message-type", help="Only this HL7v2 type (ADT^A01, ADT^*)")
    ] = None,
    ordering: Annotated[str, typer.Option("--ordering", help="fifo (default) or parallel")] = "fifo",
    as_json: JsonFlag = False,
) -> None:
    """Send a source's messages to a destination (every filter option may be repeated)."""
    with database_session() as session:
        found_source = sources.find(session, source)
        found_destination = destinations.find(session, destination)
        if found_source is None:
            raise NotFound(f"source {source[:64]!r} not found")
        if found_destination is None:
            raise NotFound(f"destination {destination[:64]!r} not found")
        subscription = subscriptions.create(
            session,
            actor=CLI,
            source=found_source[0],
            destination=found_destination[0],
            environment=found_source[1],
            data_models=data_model or [],
            event_types=event_type or [],
            message_types=message_type or [],
            ordering=ordering,
        )
        result = subscriptions.view(subscription, found_source[1])
    emit(result, as_json=as_json, text=f"Created subscription {subscription.id} ({subscription.ordering})")


@subscription_app.command("list")
def subscription_list(
    env: Annotated[str, typer.Option("--env", help="development, staging or production")],
    source: Annotated[str | None, typer.Option("--source", help="Only this source")] = None,
    org: OrgOption = None,
    as_json: JsonFlag = False,
) -> None:
    """The subscriptions of one environment."""
    scope = EnvironmentScope(org, env)
    with database_session() as session:
        views = every(
            lambda cursor: subscriptions.list_page(session, actor=CLI, scope=scope, source_id=source, cursor=cursor)
        )
    lines = [f"{v['id']}  {v['source_id']} -> {v['destination_id']}  {v['ordering']}" for v in views]
    emit({"subscriptions": views}, as_json=as_json, text="\n".join(lines) or "no subscriptions")


@subscription_app.command("set")
def subscription_set(
    subscription_id: Annotated[str, typer.Argument(help="Subscription ID")],
    enabled: Annotated[bool, typer.Option("--enabled/--disabled", help="Route new logs to it, or stop")],
    as_json: JsonFlag = False,
) -> None:
    """Switch a subscription on or off (queued deliveries are still sent)."""
    with database_session() as session:
        found = subscriptions.find(session, subscription_id)
        if found is None:
            raise NotFound(f"subscription {subscription_id[:64]!r} not found")
        subscription, environment = found
        subscriptions.set_enabled(
            session, actor=CLI, subscription=subscription, environment=environment, enabled=enabled
        )
        result = subscriptions.view(subscription, environment)
    emit(result, as_json=as_json, text=f"Subscription {subscription_id} is {'enabled' if enabled else 'disabled'}")


@subscription_app.command("delete")
def subscription_delete(
    subscription_id: Annotated[str, typer.Argument(help="Subscription ID")], as_json: JsonFlag = False
) -> None:
    """Delete a subscription: new logs are no longer routed through it; queued deliveries are still sent."""
    with database_session() as session:
        found = subscriptions.find(session, subscription_id)
        if found is None:
            raise NotFound(f"subscription {subscription_id[:64]!r} not found")
        subscriptions.delete(session, actor=CLI, subscription=found[0], environment=found[1])
    emit({"id": subscription_id, "deleted": True}, as_json=as_json, text=f"Deleted subscription {subscription_id}")
