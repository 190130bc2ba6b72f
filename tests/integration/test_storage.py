"""Storage on both backends: schema, initialization, constraints, time zones, the audit chain."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from healthway.domain.actors import CLI
from healthway.domain.permissions import EnvRole, OrgRole
from healthway.errors import AlreadyInitialized, NotFound, UnknownEnvironment
from healthway.services import audit, organizations, personal_tokens, sources
from healthway.storage.db import Database
from healthway.storage.models import (
    AuditEvent,
    Environment,
    EnvironmentRole,
    Log,
    Membership,
    Organization,
    PersonalAccessToken,
    Source,
    User,
)
from healthway.testing import CHEAP_PASSWORDS
from tests.factories import make_org, make_source


def test_migrate_is_idempotent_and_reaches_head(db: Database) -> None:
    db.migrate()
    assert db.current_revision() == db.head_revision() is not None
    with db.engine.connect() as conn:
        tables = set(sa.inspect(conn).get_table_names())
    assert {
        "organizations",
        "environments",
        "users",
        "sources",
        "oauth_keys",
        "legacy_keys",
        "access_tokens",
        "refresh_tokens",
        "used_assertions",
        "sftp_accounts",
        "mllp_peers",
        "destinations",
        "subscriptions",
        "logs",
        "deliveries",
        "attempts",
        "audit_events",
        "personal_access_tokens",
    } <= tables


def test_initialize_creates_org_environments_owner_and_roles(db: Database) -> None:
    with db.session() as session:
        created = organizations.initialize(
            session,
            actor=CLI,
            name="Northwind",
            admin_email="Admin@Example.org",
            admin_password=None,
            passwords=CHEAP_PASSWORDS,
        )
        org_id = created.organization.id
    assert created.owner_email == "admin@example.org"
    assert created.owner_password is not None and len(created.owner_password) >= 20
    with db.session() as session:
        envs = {e.name for e in session.scalars(sa.select(Environment).where(Environment.organization_id == org_id))}
        assert envs == {"development", "staging", "production"}
        user = session.scalar(sa.select(User))
        assert user is not None and user.password_hash.startswith("$argon2id$")
        assert created.owner_password not in user.password_hash
        membership = session.get(Membership, (user.id, org_id))
        assert membership is not None and membership.role == OrgRole.OWNER
        roles = session.scalars(sa.select(EnvironmentRole.role).where(EnvironmentRole.user_id == user.id)).all()
        assert sorted(roles) == [EnvRole.ADMIN] * 3


def test_second_initialize_is_refused_and_changes_nothing(db: Database) -> None:
    with db.session() as session:
        organizations.initialize(
            session, actor=CLI, name="A", admin_email="a@example.org", admin_password=None, passwords=CHEAP_PASSWORDS
        )
    with pytest.raises(AlreadyInitialized), db.session() as session:
        organizations.initialize(
            session, actor=CLI, name="B", admin_email="b@example.org", admin_password=None, passwords=CHEAP_PASSWORDS
        )
    with db.session() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Organization)) == 1
        assert session.scalar(sa.select(sa.func.count()).select_from(User)) == 1


def test_personal_access_token_is_stored_as_digest_only(db: Database) -> None:
    with db.session() as session:
        world = make_org(session)
    with db.session() as session:
        stored = session.scalar(sa.select(PersonalAccessToken))
        assert stored is not None and world.admin_token.startswith("hwpat_")
        assert world.admin_token not in stored.token_digest
        row = personal_tokens.authenticate(session, world.admin_token)
        assert row is not None and row.user_id == world.admin.id
        assert personal_tokens.authenticate(session, world.admin_token + "x") is None
        assert personal_tokens.authenticate(session, "hwsk_" + world.admin_token[6:]) is None


def test_source_create_and_unknown_environment(db: Database) -> None:
    with db.session() as session:
        world = make_org(session)
        source = make_source(session, world.envs["development"])
        source_id = source.id
    with db.session() as session:
        found = sources.find(session, source_id)
        assert found is not None and found[1].name == "development"
        with pytest.raises(UnknownEnvironment, match="dev"):
            organizations.environment(session, world.org.id, "dev")
        with pytest.raises(NotFound):
            organizations.resolve(session, "00000000-0000-0000-0000-000000000000")


def test_one_environment_role_per_user_and_environment(db: Database) -> None:
    with db.session() as session:
        world = make_org(session)
    with pytest.raises(IntegrityError), db.session() as session:
        session.add(EnvironmentRole(user_id=world.admin.id, environment_id=world.envs["staging"].id, role="viewer"))


def test_times_come_back_timezone_aware_utc(db: Database) -> None:
    with db.session() as session:
        world = make_org(session)
        source = make_source(session, world.envs["staging"])
        received = datetime(2025, 3, 14, 9, 26, 53, 589793, tzinfo=UTC)
        session.add(
            Log(
                environment_id=world.envs["staging"].id,
                source_id=source.id,
                transport="http",
                content_type="application/json",
                sha256="0" * 64,
                size=2,
                payload=b"{}",
                received_at=received,
            )
        )
    with db.session() as session:
        log = session.scalar(sa.select(Log))
        assert log is not None and log.received_at == received and log.received_at.tzinfo is not None
        assert log.payload == b"{}" and log.status == "received"


def test_deleting_an_organization_cascades_to_its_sources(db: Database) -> None:
    with db.session() as session:
        world = make_org(session)
        make_source(session, world.envs["production"])
    with db.session() as session:
        session.execute(sa.delete(Organization).where(Organization.id == world.org.id))
    with db.session() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Source)) == 0


def test_audit_chain_verifies_and_detects_tampering(db: Database) -> None:
    with db.session() as session:
        world = make_org(session)
        make_source(session, world.envs["development"])
        organizations.set_allow_legacy_keys(session, actor=CLI, organization=world.org, allow=False)
    with db.session() as session:
        report = audit.verify_chain(session)
        assert report.ok and report.events == 3
        actions = session.scalars(sa.select(AuditEvent.action).order_by(AuditEvent.id)).all()
        assert actions == ["org:create", "source:create", "org:update"]
    with db.session() as session:
        session.execute(sa.update(AuditEvent).where(AuditEvent.action == "source:create").values(subject_id="x"))
    with db.session() as session:
        report = audit.verify_chain(session)
        assert not report.ok and report.first_broken_id == 2
