"""Small helpers that build the objects most tests start from, through the real services."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from healthway.domain.actors import CLI
from healthway.services import (
    access_tokens,
    deliveries,
    destinations,
    organizations,
    personal_tokens,
    sources,
    subscriptions,
    users,
)
from healthway.storage.models import (
    Destination,
    Environment,
    Log,
    OAuthKey,
    OAuthKeySource,
    Organization,
    Source,
    Subscription,
    User,
    utcnow,
)
from healthway.testing import CHEAP_PASSWORDS, LOOPBACK_POLICY


@dataclass
class World:
    org: Organization
    admin: User
    admin_password: str
    admin_token: str
    envs: dict[str, Environment]


def make_org(session: Session, *, name: str = "Northwind", email: str = "admin@northwind.example.org") -> World:
    # The tests log in with the owner's generated password, as the operator of `healthway init` does.
    created = organizations.create(
        session, actor=CLI, name=name, owner_email=email, passwords=CHEAP_PASSWORDS, must_change=False
    )
    admin = users.find_by_email(session, email)
    assert admin is not None and created.owner_password is not None
    _, token = personal_tokens.create(session, user=admin, name="test", organization_id=created.organization.id)
    envs = {e.name: e for e in organizations.environments(session, created.organization.id)}
    return World(created.organization, admin, created.owner_password, token, envs)


def make_source(session: Session, env: Environment, name: str = "EHR") -> Source:
    return sources.create(session, actor=CLI, environment=env, name=name)


def make_access_token(
    session: Session,
    env: Environment,
    *,
    sources: list[Source] | None = None,
    now: datetime | None = None,
    scope: str = "system/*.*",
) -> str:
    """A 300 s bearer token from an OAuth key covering ``sources`` (or every source of ``env``), with ``scope``."""
    key = OAuthKey(environment_id=env.id, alg="ES384", jwks={"keys": []}, name="test", all_sources=not sources)
    session.add(key)
    session.flush()
    session.add_all(OAuthKeySource(key_id=key.id, source_id=s.id) for s in sources or [])
    token, _ = access_tokens.issue(
        session,
        environment_id=env.id,
        oauth_key_id=key.id,
        now=now or utcnow(),
        ttl=timedelta(seconds=300),
        scope=scope,
    )
    return token


def make_destination(
    session: Session, env: Environment, *, kind: str = "webhook", name: str = "Receiver", **config: object
) -> Destination:
    """A destination through the real service (a webhook to an unused loopback URL unless told otherwise)."""
    config = config or {"url": "http://127.0.0.1:9/hook"}
    destination, _ = destinations.create(
        session, actor=CLI, environment=env, name=name, kind=kind, config=config, outbound=LOOPBACK_POLICY
    )
    return destination


def make_subscription(
    session: Session, source: Source, destination: Destination, *, ordering: str = "fifo", **filters: list[str]
) -> Subscription:
    env = session.get(Environment, source.environment_id)
    assert env is not None
    return subscriptions.create(
        session, actor=CLI, source=source, destination=destination, environment=env, ordering=ordering, **filters
    )


def make_log(
    session: Session,
    source: Source,
    payload: bytes = b'{"Meta": {"DataModel": "PatientAdmin", "EventType": "Arrival"}}',
    *,
    received_at: datetime | None = None,
    content_type: str = "application/json",
    data_model: str | None = "PatientAdmin",
    event_type: str | None = "Arrival",
    message_type: str | None = None,
    destination_ids: list[str] | None = None,
) -> Log:
    """A log inserted and routed the way intake does it (in one transaction), without going through HTTP."""
    log = Log(
        environment_id=source.environment_id,
        source_id=source.id,
        transport="http",
        content_type=content_type,
        data_model=data_model,
        event_type=event_type,
        message_type=message_type,
        sha256=hashlib.sha256(payload).hexdigest(),
        size=len(payload),
        payload=payload,
        received_at=received_at or utcnow(),
    )
    session.add(log)
    session.flush()
    deliveries.route(session, log=log, destination_ids=destination_ids)
    return log
