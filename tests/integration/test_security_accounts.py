"""Issue 14, people, logins, roles and replay (items 7, 8, 9, 18), through the Platform API."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anyio
import pyotp
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from healthway.app import build
from healthway.domain.actors import CLI
from healthway.domain.permissions import EnvRole, OrgRole
from healthway.errors import RateLimited, Unauthenticated
from healthway.services import login, users
from healthway.settings import Settings
from healthway.storage.db import Database
from healthway.storage.models import AuditEvent, LoginFailure, User
from healthway.testing import CHEAP_PASSWORDS, http_app
from tests.factories import World, make_destination, make_log, make_org, make_source, make_subscription
from tests.integration.platform_actions import make_member
from tests.integration.test_platform_accounts import Clock


@dataclass
class Api:
    client: TestClient
    db: Database
    clock: Clock
    world: World

    def bearer(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    @property
    def owner(self) -> dict[str, str]:
        return self.bearer(self.world.admin_token)

    def member(self, email: str, **kwargs: Any) -> tuple[User, dict[str, str]]:
        with self.db.session() as session:
            user, token = make_member(session, self.world, email, **kwargs)
        return user, self.bearer(token)

    def actions(self, action: str) -> list[AuditEvent]:
        with self.db.session() as session:
            return list(session.scalars(sa.select(AuditEvent).where(AuditEvent.action == action)))


def basic(email: str, password: str, **extra: str) -> dict[str, str]:
    credentials = base64.b64encode(f"{email}:{password}".encode()).decode()
    return {"Authorization": f"Basic {credentials}", **extra}


def make_api(db: Database, **overrides: Any) -> Iterator[Api]:
    clock = Clock(datetime(2030, 1, 1, 12, 0, tzinfo=UTC))
    with db.session() as session:
        world = make_org(session)
    settings = Settings(_env_file=None, allow_loopback_destinations=True, allow_http_destinations=True)
    with TestClient(
        http_app(build(settings, db=db, clock=clock, **({"passwords": CHEAP_PASSWORDS} | overrides)))
    ) as client:
        yield Api(client, db, clock, world)


@pytest.fixture
def api(db: Database) -> Iterator[Api]:
    yield from make_api(db)


# -- item 8: replay --------------------------------------------------------------------------------------------


def test_production_engineer_replays_only_to_destinations_the_log_went_to(api: Api) -> None:
    with api.db.session() as session:
        prod = api.world.envs["production"]
        source = make_source(session, prod)
        routed = make_destination(session, prod, name="Routed")
        make_subscription(session, source, routed)
        log_id = make_log(session, source).id
        own = make_destination(session, prod, name="Engineer's own").id
    _, engineer = api.member("eng@northwind.example.org", env_role=EnvRole.ENGINEER)
    url = f"/platform/v1/logs/{log_id}/replay"

    refused = api.client.post(url, json={"destination": own}, headers=engineer)
    assert refused.status_code == 403 and "logs:read_payload" in refused.json()["error"]["message"]
    assert api.client.post(url, json={"destination": routed.id}, headers=engineer).status_code == 201
    assert api.client.post(url, headers=engineer).status_code == 201
    assert api.actions("payload:view") == []

    # The production admin may read payloads, so may send one somewhere new: audited as a disclosure.
    sent = api.client.post(url, json={"destination": own}, headers=api.owner)
    assert sent.status_code == 201 and [d["destination_id"] for d in sent.json()["deliveries"]] == [own]
    [disclosure] = api.actions("payload:view")
    assert disclosure.subject_id == log_id and disclosure.summary["destinations"] == [own]
    assert disclosure.summary["via"] == "replay"
    replays = api.actions("log:replay")
    assert [r.summary["new_destinations"] for r in replays] == [[], [], [own]]


# -- item 7: password login ------------------------------------------------------------------------------------


def _login(db: Database, email: str, password: str, address: str, now: datetime) -> User:
    call = login.login(
        db, login.PasswordChecker(CHEAP_PASSWORDS), email=email, password=password, totp=None, address=address, now=now
    )
    return anyio.run(lambda: call)


def test_failures_from_one_address_do_not_lock_the_owner_out_from_another(api: Api) -> None:
    email = api.world.admin.email
    for _ in range(3 * login.FREE_FAILURES):  # a guesser elsewhere, well past any lockout
        with pytest.raises((Unauthenticated, RateLimited)):
            _login(api.db, email, "wrong password!!", "203.0.113.9", api.clock())
    right = api.client.post("/platform/v1/tokens", headers=basic(email, api.world.admin_password))
    assert right.status_code == 201, right.text
    with pytest.raises(RateLimited):  # the guesser's own address is still locked
        _login(api.db, email, api.world.admin_password, "203.0.113.9", api.clock())


def test_throttled_logins_add_a_bounded_number_of_audit_rows(api: Api) -> None:
    email = api.world.admin.email
    for _ in range(login.FREE_FAILURES):
        assert api.client.post("/platform/v1/tokens", headers=basic(email, "wrong password!!")).status_code == 401
    for _ in range(50):
        assert api.client.post("/platform/v1/tokens", headers=basic(email, "wrong password!!")).status_code == 429
    failed = api.actions("user:login_failed")
    assert len(failed) == login.FREE_FAILURES + 1  # one event for the whole lockout, not one per attempt
    assert failed[-1].summary["reason"] == "throttled"
    api.clock.advance(seconds=login.FIRST_LOCKOUT.total_seconds())
    assert api.client.post("/platform/v1/tokens", headers=basic(email, api.world.admin_password)).status_code == 201
    [success] = api.actions("user:login")
    assert success.summary["refused_while_locked"] == 50  # ... with the count of refused attempts


def test_passwords_are_verified_outside_the_write_transaction(db: Database) -> None:
    """A slow hasher: while it runs, another thread commits a write. Verifying inside the write transaction (as
    before) would hold SQLite's single writer, and the write would wait until the login was over."""
    wrote: list[bool] = []

    def write_elsewhere() -> None:
        with db.session() as session:
            session.add(LoginFailure(email="x@example.org", address="198.51.100.1", occurred_at=datetime.now(UTC)))

    def slow_verify(password_hash: str, password: str) -> tuple[bool, str | None]:
        writer = threading.Thread(target=write_elsewhere)
        writer.start()
        writer.join(timeout=3)
        wrote.append(not writer.is_alive())  # the write committed while the password was being checked
        return CHEAP_PASSWORDS.verify(password_hash, password)

    for api in make_api(db, password_checker=login.PasswordChecker(CHEAP_PASSWORDS, verify=slow_verify)):
        response = api.client.post(
            "/platform/v1/tokens", headers=basic(api.world.admin.email, api.world.admin_password)
        )
        assert response.status_code == 201
    assert wrote == [True]


# -- item 9: invitations ---------------------------------------------------------------------------------------


def test_invitations_wait_for_consent_and_do_not_reveal_the_account(api: Api) -> None:
    with api.db.session() as session:
        victim = make_org(session, name="Lakeview", email="owner@lakeview.example.org")
        session.get(User, victim.admin.id).totp_secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"  # type: ignore[union-attr]
    _, org_admin = api.member("orgadmin@northwind.example.org", org_role=OrgRole.ADMIN)
    existing = api.client.post("/platform/v1/users", headers=org_admin, json={"email": victim.admin.email})
    new = api.client.post("/platform/v1/users", headers=org_admin, json={"email": "nobody.yet@example.org"})
    assert existing.status_code == new.status_code == 201
    assert set(existing.json()) == set(new.json()) and existing.json()["status"] == new.json()["status"] == "invited"
    assert not {"password", "totp", "new_account"} & set(existing.json())
    created = api.actions("invitation:create")
    assert [set(e.summary) for e in created] == [{"email", "org_role"}] * 2

    # Not a member until they accept: their own organization's token keeps working, nothing shows here.
    victim_token = api.bearer(victim.admin_token)
    assert api.client.get("/platform/v1/users", headers=victim_token).status_code == 200
    listed = api.client.get("/platform/v1/users", headers=org_admin).json()["users"]
    assert victim.admin.email not in {u["email"] for u in listed}
    [invitation] = api.client.get("/platform/v1/invitations", headers=victim_token).json()["invitations"]
    assert invitation["organization_id"] == api.world.org.id
    accepted = api.client.post(f"/platform/v1/invitations/{invitation['id']}/accept", headers=victim_token)
    assert accepted.status_code == 200 and accepted.json()["org_role"] == "member"
    # Two organizations now: the old token stays bound to Lakeview, no "several organizations" 400.
    assert api.client.get("/platform/v1/users", headers=victim_token).status_code == 200

    # Their logins for Lakeview are Lakeview's business only.
    made = api.client.post(
        "/platform/v1/tokens",
        headers=basic(victim.admin.email, victim.admin_password, **{"Healthway-TOTP": _totp(api)}),
        json={"organization": victim.org.id},
    )
    assert made.status_code == 201 and made.json()["organization_id"] == victim.org.id
    [event] = api.actions("user:login")
    assert event.organization_id == victim.org.id


def _totp(api: Api) -> str:
    return pyotp.TOTP("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP").at(api.clock())


def test_a_membership_can_be_removed_and_its_tokens_stop(api: Api) -> None:
    user, member = api.member("leaving@northwind.example.org", env_role=EnvRole.VIEWER)
    _, org_admin = api.member("orgadmin@northwind.example.org", org_role=OrgRole.ADMIN)
    owner_url = f"/platform/v1/users/{api.world.admin.email}"
    assert api.client.delete(owner_url, headers=org_admin).status_code == 403  # only owners remove owners
    assert api.client.delete(owner_url, headers=api.owner).status_code == 409  # the last owner stays
    assert api.client.delete(f"/platform/v1/users/{user.email}", headers=org_admin).status_code == 204
    assert api.client.get("/platform/v1/sources?environment=development", headers=member).status_code == 401
    assert api.client.get(f"/platform/v1/users/{user.email}", headers=api.owner).status_code == 404
    [removed] = api.actions("user:remove")
    assert removed.subject_id == user.email and removed.summary["tokens_revoked"] == 1


# -- item 18: roles and generated passwords --------------------------------------------------------------------


def test_only_owners_grant_phi_roles_or_touch_an_owners_roles(api: Api) -> None:
    user, org_admin = api.member("orgadmin@northwind.example.org", org_role=OrgRole.ADMIN)
    for environment, role in (("production", "admin"), ("production", "analyst")):
        url = f"/platform/v1/users/{user.email}/roles/{environment}"
        assert api.client.put(url, headers=org_admin, json={"role": role}).status_code == 403
    owner_role = f"/platform/v1/users/{api.world.admin.email}/roles/production"
    assert api.client.put(owner_role, headers=org_admin, json={"role": None}).status_code == 403
    staging = f"/platform/v1/users/{user.email}/roles/staging"
    assert api.client.put(staging, headers=org_admin, json={"role": "admin"}).status_code == 200  # no PHI there
    granted = api.client.put(
        f"/platform/v1/users/{user.email}/roles/production", headers=api.owner, json={"role": "analyst"}
    )
    assert granted.status_code == 200 and "logs:read_payload" in granted.json()["gained"]


def test_a_generated_password_must_be_changed_before_login_works(api: Api) -> None:
    with api.db.session() as session:
        user, generated = users.add_member(
            session, actor=CLI, organization=api.world.org, email="new@example.org", passwords=CHEAP_PASSWORDS
        )
    assert generated is not None
    refused = api.client.post("/platform/v1/tokens", headers=basic(user.email, generated))
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "password_change_required"
    assert "/platform/v1/account/password" in refused.json()["error"]["message"]

    change = api.client.put(
        "/platform/v1/account/password",
        headers=basic(user.email, generated),
        json={"password": "my own long passphrase"},
    )
    assert change.status_code == 204, change.text
    assert api.client.post("/platform/v1/tokens", headers=basic(user.email, generated)).status_code == 401
    assert (
        api.client.post("/platform/v1/tokens", headers=basic(user.email, "my own long passphrase")).status_code == 201
    )
    assert [e.subject_id for e in api.actions("user:password_change")] == [user.email]
