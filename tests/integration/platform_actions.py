"""Every Platform API action, the permission it needs, and how to perform it: the registry the permission matrix
(test_permission_matrix.py) is generated from.

To add an endpoint, append an ``Action`` to ``ACTIONS``: its route template exactly as FastAPI knows it, the
permission the endpoint must check (None: any member, for the caller's own things), the environment it acts in,
and, when it acts on an object, a ``prepare`` that creates a fresh one (called before every request, so delete and
rotate actions can run once per caller). ``test_every_platform_route_is_in_the_registry`` fails until you do.
"""

from __future__ import annotations

import hashlib
import itertools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from healthway.domain.actors import CLI
from healthway.domain.outbound import OutboundPolicy
from healthway.domain.permissions import EnvRole, OrgRole, Permission
from healthway.services import (
    deliveries,
    destinations,
    invitations,
    legacy_keys,
    mllp_peers,
    oauth_keys,
    organizations,
    personal_tokens,
    subscriptions,
)
from healthway.services.oauth_keys import KeyMaterial
from healthway.storage.models import Destination, EnvironmentRole, Log, Membership, Organization, Source, User
from healthway.testing import CHEAP_PASSWORDS
from tests.factories import World, make_source

P = Permission
PASSWORD = "correct horse battery staple"
Ids = dict[str, str]


@cache
def password_hash() -> str:
    """Hash the shared test password once per process."""
    return CHEAP_PASSWORDS.hash(PASSWORD)


def make_member(
    session: Session, world: World, email: str, *, org_role: OrgRole = OrgRole.MEMBER, env_role: EnvRole | None = None
) -> tuple[User, str]:
    """(user, personal access token): a member of ``world.org`` with ``env_role`` in all three environments.
    Their password is ``PASSWORD``."""
    user = User(email=email, password_hash=password_hash())
    session.add(user)
    session.flush()
    session.add(Membership(user_id=user.id, organization_id=world.org.id, role=org_role.value))
    if env_role is not None:
        session.add_all(
            EnvironmentRole(user_id=user.id, environment_id=env.id, role=env_role.value) for env in world.envs.values()
        )
    session.flush()
    _, token = personal_tokens.create(session, user=user, name="matrix", organization_id=world.org.id)
    return user, token


@dataclass(frozen=True)
class Action:
    name: str
    method: str
    route: str  # the path template as the app declares it, e.g. "/platform/v1/sources/{source_id}"
    permission: Permission | None  # None: any member (the caller's own things)
    environment: str = "development"  # where an environment permission is checked
    success: int = 200
    # Creates what the request acts on; returns the path parameters and anything ``body`` needs.
    prepare: Callable[[Session, World, User], Ids] = lambda _s, _w, _u: {}
    params: dict[str, str] = field(default_factory=dict)
    body: Callable[[Ids], Any] | None = None
    personal: bool = False  # acts on the caller's own things: someone of another organization succeeds too
    also: Permission | None = None  # a second permission the action needs (both must be granted)
    basic_auth: bool = False  # authenticated with HTTP Basic (the caller's e-mail and PASSWORD), not the token

    def request(self, world: World, caller: User, session: Session) -> dict[str, Any]:
        """Keyword arguments for ``TestClient.request``. Actions always name the organization explicitly, so a
        caller of another organization is refused (404) instead of quietly acting in their own."""
        ids = {"organization_id": world.org.id, **self.prepare(session, world, caller)}
        params = self.params if self.personal else {"organization": world.org.id, **self.params}
        kwargs: dict[str, Any] = {"method": self.method, "url": self.route.format(**ids), "params": params}
        if self.body is not None:
            kwargs["json"] = self.body(ids)
        return kwargs


def _source(environment: str) -> Callable[[Session, World, User], Ids]:
    def prepare(session: Session, world: World, _caller: User) -> Ids:
        return {"source_id": make_source(session, world.envs[environment], f"src-{uuid.uuid4().hex[:8]}").id}

    return prepare


_PEER_ADDRESSES = itertools.count(1)  # every added peer gets its own address: networks of two sources never overlap


def _peer_address() -> str:
    n = next(_PEER_ADDRESSES)
    return f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"


def _mllp_peer(environment: str) -> Callable[[Session, World, User], Ids]:
    def prepare(session: Session, world: World, caller: User) -> Ids:
        ids = _source(environment)(session, world, caller)
        source = session.get(Source, ids["source_id"])
        assert source is not None
        peer = mllp_peers.add(
            session, actor=CLI, source=source, environment=world.envs[environment], cidr=_peer_address()
        )
        return {**ids, "peer_id": peer.id}

    return prepare


def _target_user(session: Session, world: World, _caller: User) -> Ids:
    user, _ = make_member(session, world, f"target-{uuid.uuid4().hex[:8]}@northwind.example.org")
    return {"email": user.email}


def _own_invitation(session: Session, _world: World, caller: User) -> Ids:
    """An invitation of the caller to a fresh organization (so any caller, of any organization, has one)."""
    org = session.scalar(sa.select(Organization).where(Organization.name == "Inviter"))
    if org is None:  # one inviting organization for the whole matrix: creating one hashes a password
        org = organizations.create(
            session, actor=CLI, name="Inviter", owner_email="owner@inviter.example", passwords=CHEAP_PASSWORDS
        ).organization
    session.execute(sa.delete(Membership).where(Membership.user_id == caller.id, Membership.organization_id == org.id))
    pending = invitations.invite(session, actor=CLI, organization=org, email=caller.email, passwords=CHEAP_PASSWORDS)
    return {"invitation_id": pending.invitation.id}


def _known_password(session: Session, _world: World, caller: User) -> Ids:
    """The caller's password is PASSWORD (the outsider's was generated); the action sets it to PASSWORD again."""
    user = session.get(User, caller.id)
    assert user is not None
    user.password_hash = password_hash()
    return {}


def _own_token(session: Session, _world: World, caller: User) -> Ids:
    row, _ = personal_tokens.create(session, user=caller, name="to revoke")
    return {"token_id": row.id}


def _new_email(_ids: Ids) -> dict[str, str]:
    return {"email": f"new-{uuid.uuid4().hex[:8]}@northwind.example.org"}


def _destination_id(session: Session, world: World, environment: str) -> str:
    destination, _ = destinations.create(
        session,
        actor=CLI,
        environment=world.envs[environment],
        name=f"dst-{uuid.uuid4().hex[:8]}",
        kind="webhook",
        config={"url": "https://receiver.example.org/hook"},
        outbound=OutboundPolicy(),
    )
    return destination.id


def _destination(environment: str) -> Callable[[Session, World, User], Ids]:
    return lambda session, world, _caller: {"destination_id": _destination_id(session, world, environment)}


def _source_and_destination(environment: str) -> Callable[[Session, World, User], Ids]:
    def prepare(session: Session, world: World, caller: User) -> Ids:
        return {**_source(environment)(session, world, caller), **_destination(environment)(session, world, caller)}

    return prepare


def _subscription(environment: str) -> Callable[[Session, World, User], Ids]:
    def prepare(session: Session, world: World, caller: User) -> Ids:
        ids = _source_and_destination(environment)(session, world, caller)
        source, destination = session.get(Source, ids["source_id"]), session.get(Destination, ids["destination_id"])
        assert source is not None and destination is not None
        env = world.envs[environment]
        row = subscriptions.create(session, actor=CLI, source=source, destination=destination, environment=env)
        return {"subscription_id": row.id}

    return prepare


def _log(environment: str) -> Callable[[Session, World, User], Ids]:
    def prepare(session: Session, world: World, caller: User) -> Ids:
        source_id = _source(environment)(session, world, caller)["source_id"]
        payload = b'{"Meta": {"DataModel": "PatientAdmin", "EventType": "NewPatient"}}'
        log = Log(
            environment_id=world.envs[environment].id,
            source_id=source_id,
            transport="http",
            content_type="application/json",
            sha256=hashlib.sha256(payload).hexdigest(),
            size=len(payload),
            payload=payload,
        )
        session.add(log)
        session.flush()
        return {"log_id": log.id, "destination_id": _destination_id(session, world, environment)}

    return prepare


def _routed_log(environment: str) -> Callable[[Session, World, User], Ids]:
    """A log that was routed to its destination (it has a delivery there)."""

    def prepare(session: Session, world: World, caller: User) -> Ids:
        ids = _log(environment)(session, world, caller)
        log = session.get(Log, ids["log_id"])
        assert log is not None
        deliveries.new_delivery(
            session, log=log, subscription=None, now=log.received_at, destination_id=ids["destination_id"]
        )
        return ids

    return prepare


def _environment_actions(env: str) -> list[Action]:
    """Every action on a resource that lives in one environment, performed in ``env``."""
    listing = {"environment": env}
    return [
        Action(f"sources.list.{env}", "GET", "/platform/v1/sources", P.SOURCES_READ, env, params=listing),
        Action(
            f"sources.create.{env}",
            "POST",
            "/platform/v1/sources",
            P.SOURCES_WRITE,
            env,
            success=201,
            body=lambda _ids: {"environment": env, "name": "New EHR"},
        ),
        Action(
            f"sources.get.{env}", "GET", "/platform/v1/sources/{source_id}", P.SOURCES_READ, env, prepare=_source(env)
        ),
        Action(
            f"sources.update.{env}",
            "PATCH",
            "/platform/v1/sources/{source_id}",
            P.SOURCES_WRITE,
            env,
            prepare=_source(env),
            body=lambda _ids: {"name": "Renamed"},
        ),
        Action(
            f"sources.delete.{env}",
            "DELETE",
            "/platform/v1/sources/{source_id}",
            P.SOURCES_WRITE,
            env,
            success=204,
            prepare=_source(env),
        ),
        Action(f"mllp_peers.list.{env}", "GET", "/platform/v1/mllp-peers", P.SOURCES_READ, env, params=listing),
        Action(
            f"mllp_peers.add.{env}",
            "POST",
            "/platform/v1/mllp-peers",
            P.SOURCES_WRITE,
            env,
            success=201,
            prepare=_source(env),
            body=lambda ids: {"source_id": ids["source_id"], "cidr": _peer_address()},
        ),
        Action(
            f"mllp_peers.remove.{env}",
            "DELETE",
            "/platform/v1/mllp-peers/{peer_id}",
            P.SOURCES_WRITE,
            env,
            success=204,
            prepare=_mllp_peer(env),
        ),
        Action(
            f"destinations.list.{env}", "GET", "/platform/v1/destinations", P.DESTINATIONS_READ, env, params=listing
        ),
        Action(
            f"destinations.create.{env}",
            "POST",
            "/platform/v1/destinations",
            P.DESTINATIONS_WRITE,
            env,
            success=201,
            body=lambda _ids: {"environment": env, "name": "Hook", "kind": "webhook", "url": "https://r.example.org/"},
        ),
        Action(
            f"destinations.get.{env}",
            "GET",
            "/platform/v1/destinations/{destination_id}",
            P.DESTINATIONS_READ,
            env,
            prepare=_destination(env),
        ),
        Action(
            f"destinations.update.{env}",
            "PATCH",
            "/platform/v1/destinations/{destination_id}",
            P.DESTINATIONS_WRITE,
            env,
            prepare=_destination(env),
            body=lambda _ids: {"enabled": False},
        ),
        Action(
            f"destinations.delete.{env}",
            "DELETE",
            "/platform/v1/destinations/{destination_id}",
            P.DESTINATIONS_WRITE,
            env,
            success=204,
            prepare=_destination(env),
        ),
        Action(
            f"subscriptions.list.{env}", "GET", "/platform/v1/subscriptions", P.SUBSCRIPTIONS_READ, env, params=listing
        ),
        Action(
            f"subscriptions.create.{env}",
            "POST",
            "/platform/v1/subscriptions",
            P.SUBSCRIPTIONS_WRITE,
            env,
            success=201,
            prepare=_source_and_destination(env),
            body=lambda ids: {"source": ids["source_id"], "destination": ids["destination_id"]},
        ),
        Action(
            f"subscriptions.update.{env}",
            "PATCH",
            "/platform/v1/subscriptions/{subscription_id}",
            P.SUBSCRIPTIONS_WRITE,
            env,
            prepare=_subscription(env),
            body=lambda _ids: {"enabled": False},
        ),
        Action(
            f"subscriptions.delete.{env}",
            "DELETE",
            "/platform/v1/subscriptions/{subscription_id}",
            P.SUBSCRIPTIONS_WRITE,
            env,
            success=204,
            prepare=_subscription(env),
        ),
        Action(  # to a destination the log never went to: a payload disclosure (issue 14, item 8)
            f"logs.replay.{env}",
            "POST",
            "/platform/v1/logs/{log_id}/replay",
            P.LOGS_REPLAY,
            env,
            success=201,
            prepare=_log(env),
            body=lambda ids: {"destination": ids["destination_id"]},
            also=P.LOGS_READ_PAYLOAD,
        ),
        Action(
            f"logs.replay_routed.{env}",
            "POST",
            "/platform/v1/logs/{log_id}/replay",
            P.LOGS_REPLAY,
            env,
            success=201,
            prepare=_routed_log(env),
            body=lambda ids: {"destination": ids["destination_id"]},
        ),
    ]


ACTIONS: list[Action] = [
    # organizations and environments
    Action("organizations.list", "GET", "/platform/v1/organizations", None, personal=True),
    Action("organizations.get", "GET", "/platform/v1/organizations/{organization_id}", P.ORG_READ),
    Action(
        "organizations.update",
        "PATCH",
        "/platform/v1/organizations/{organization_id}",
        P.ORG_UPDATE,
        body=lambda _ids: {"allow_legacy_keys": False},
    ),
    Action("environments.list", "GET", "/platform/v1/environments", P.ORG_READ),
    # users and roles
    Action("users.list", "GET", "/platform/v1/users", P.USERS_READ),
    Action("users.get", "GET", "/platform/v1/users/{email}", P.USERS_READ, prepare=_target_user),
    Action("users.invite_member", "POST", "/platform/v1/users", P.USERS_INVITE, success=201, body=_new_email),
    Action(
        "users.invite_admin",
        "POST",
        "/platform/v1/users",
        P.ORG_ROLES_ASSIGN,
        success=201,
        body=lambda ids: {**_new_email(ids), "org_role": "admin"},
    ),
    Action(
        "users.set_role",
        "PUT",
        "/platform/v1/users/{email}/roles/{environment}",
        P.ENV_ROLES_ASSIGN,
        prepare=lambda s, w, u: {**_target_user(s, w, u), "environment": "production"},
        body=lambda _ids: {"role": "engineer"},
    ),
    Action(  # production admin reads PHI: owners alone grant it (issue 14, item 18)
        "users.set_role_phi",
        "PUT",
        "/platform/v1/users/{email}/roles/{environment}",
        P.PHI_ROLES_ASSIGN,
        prepare=lambda s, w, u: {**_target_user(s, w, u), "environment": "production"},
        body=lambda _ids: {"role": "admin"},
    ),
    Action("users.remove", "DELETE", "/platform/v1/users/{email}", P.USERS_REMOVE, success=204, prepare=_target_user),
    # invitations: each person answers their own
    Action("invitations.list", "GET", "/platform/v1/invitations", None, personal=True),
    Action(
        "invitations.accept",
        "POST",
        "/platform/v1/invitations/{invitation_id}/accept",
        None,
        personal=True,
        prepare=_own_invitation,
    ),
    Action(
        "invitations.decline",
        "POST",
        "/platform/v1/invitations/{invitation_id}/decline",
        None,
        success=204,
        personal=True,
        prepare=_own_invitation,
    ),
    Action(
        "account.password",
        "PUT",
        "/platform/v1/account/password",
        None,
        success=204,
        personal=True,
        basic_auth=True,
        prepare=_known_password,
        body=lambda _ids: {"password": PASSWORD},
    ),
    # personal access tokens: each person manages their own
    Action("tokens.create", "POST", "/platform/v1/tokens", None, success=201, personal=True),
    Action("tokens.list", "GET", "/platform/v1/tokens", None, personal=True),
    Action(
        "tokens.revoke",
        "DELETE",
        "/platform/v1/tokens/{token_id}",
        None,
        success=204,
        personal=True,
        prepare=_own_token,
    ),
    # audit trail
    Action("audit_events.list", "GET", "/platform/v1/audit-events", P.AUDIT_READ),
    # environment-scoped resources, in a development and in the production environment
    *(action for env in ("development", "production") for action in _environment_actions(env)),
]


def _oauth_key(environment: str) -> Callable[[Session, World, User], Ids]:
    def prepare(session: Session, world: World, _caller: User) -> Ids:
        material = KeyMaterial(jwks_url="https://keys.example.org/jwks.json")
        created = oauth_keys.create(session, actor=CLI, environment=world.envs[environment], material=material)
        return {"key_id": created.key.id}

    return prepare


def _oauth_key_actions(env: str) -> list[Action]:
    """OAuth keys (issue 5), performed in ``env``."""
    return [
        Action(
            f"oauth_keys.list.{env}", "GET", "/platform/v1/oauth-keys", P.KEYS_READ, env, params={"environment": env}
        ),
        Action(
            f"oauth_keys.create.{env}",
            "POST",
            "/platform/v1/oauth-keys",
            P.KEYS_WRITE,
            env,
            success=201,
            body=lambda _ids: {"environment": env, "jwks_url": "https://keys.example.org/jwks.json"},
        ),
        Action(
            f"oauth_keys.delete.{env}",
            "DELETE",
            "/platform/v1/oauth-keys/{key_id}",
            P.KEYS_WRITE,
            env,
            success=204,
            prepare=_oauth_key(env),
        ),
    ]


ACTIONS += [action for env in ("development", "production") for action in _oauth_key_actions(env)]


def _legacy_source(environment: str) -> Callable[[Session, World, User], Ids]:
    """A fresh source, in an organization that allows legacy keys (another action may have turned them off)."""

    def prepare(session: Session, world: World, caller: User) -> Ids:
        session.execute(sa.update(Organization).where(Organization.id == world.org.id).values(allow_legacy_keys=True))
        return _source(environment)(session, world, caller)

    return prepare


def _legacy_key(environment: str) -> Callable[[Session, World, User], Ids]:
    def prepare(session: Session, world: World, caller: User) -> Ids:
        source = session.get(Source, _legacy_source(environment)(session, world, caller)["source_id"])
        assert source is not None
        key, _ = legacy_keys.create(session, actor=CLI, source=source, environment=world.envs[environment])
        return {"api_key": key.api_key}

    return prepare


def _legacy_key_and_log_actions(env: str) -> list[Action]:
    """Legacy keys (issue 6) and the message log (issue 7), performed in ``env``."""
    listing = {"environment": env}
    return [
        Action(f"legacy_keys.list.{env}", "GET", "/platform/v1/legacy-keys", P.KEYS_READ, env, params=listing),
        Action(
            f"legacy_keys.create.{env}",
            "POST",
            "/platform/v1/sources/{source_id}/legacy-key",
            P.KEYS_WRITE,
            env,
            success=201,
            prepare=_legacy_source(env),
        ),
        Action(
            f"legacy_keys.rotate.{env}",
            "POST",
            "/platform/v1/legacy-keys/{api_key}/rotate-secret",
            P.KEYS_WRITE,
            env,
            prepare=_legacy_key(env),
        ),
        Action(f"logs.list.{env}", "GET", "/platform/v1/logs", P.LOGS_READ, env, params=listing),
        Action(f"logs.counts.{env}", "GET", "/platform/v1/logs/counts", P.LOGS_READ, env, params=listing),
        Action(f"logs.get.{env}", "GET", "/platform/v1/logs/{log_id}", P.LOGS_READ, env, prepare=_log(env)),
    ]


ACTIONS += [action for env in ("development", "production") for action in _legacy_key_and_log_actions(env)]
