"""Small helpers that build the objects most tests start from, through the real services."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from healthway.domain.actors import CLI
from healthway.services import organizations, sources, tokens, users
from healthway.storage.models import Environment, Organization, Source, User


@dataclass
class World:
    org: Organization
    admin: User
    admin_password: str
    admin_token: str
    envs: dict[str, Environment]


def make_org(session: Session, *, name: str = "Northwind", email: str = "admin@northwind.example.org") -> World:
    created = organizations.create(session, actor=CLI, name=name, owner_email=email)
    admin = users.find_by_email(session, email)
    assert admin is not None and created.owner_password is not None
    _, token = tokens.create(session, user=admin, name="test")
    envs = {e.name: e for e in organizations.environments(session, created.organization.id)}
    return World(created.organization, admin, created.owner_password, token, envs)


def make_source(session: Session, env: Environment, name: str = "EHR") -> Source:
    return sources.create(session, actor=CLI, environment=env, name=name)
