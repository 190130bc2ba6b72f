"""Accounts through the Platform API: login (Basic + optional TOTP), throttling, rehash, tokens, users and roles,
organizations, environments, and isolation between organizations. Time comes from an injected clock."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import anyio
import pyotp
import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from healthway.app import build
from healthway.domain.actors import CLI
from healthway.domain.permissions import EnvRole, OrgRole
from healthway.errors import RateLimited, Unauthenticated
from healthway.services import login, organizations
from healthway.settings import Settings
from healthway.storage.db import Database
from healthway.storage.models import LoginFailure, User
from healthway.testing import CHEAP_PASSWORDS, http_app
from tests.factories import World, make_org, make_source
from tests.integration.platform_actions import PASSWORD, make_member

ADDRESS = "testclient"  # what TestClient reports as the client address


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class Api:
    client: TestClient
    db: Database
    clock: Clock
    world: World

    def as_(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    @property
    def admin(self) -> dict[str, str]:
        return self.as_(self.world.admin_token)

    def basic(self, email: str, password: str, **extra: str) -> dict[str, str]:
        credentials = base64.b64encode(f"{email}:{password}".encode()).decode()
        return {"Authorization": f"Basic {credentials}", **extra}


@pytest.fixture
def api(db: Database) -> Iterator[Api]:
    clock = Clock(datetime(2030, 1, 1, 12, 0, tzinfo=UTC))
    with db.session() as session:
        world = make_org(session)
    with TestClient(http_app(build(Settings(_env_file=None), db=db, clock=clock, passwords=CHEAP_PASSWORDS))) as client:
        yield Api(client, db, clock, world)


def _member(api: Api, email: str, **kwargs: object) -> tuple[User, str]:
    with api.db.session() as session:
        return make_member(session, api.world, email, **kwargs)  # type: ignore[arg-type]


# -- login ---------------------------------------------------------------------------------------------------


def test_basic_login_creates_a_token_that_works(api: Api) -> None:
    email = api.world.admin.email
    response = api.client.post(
        "/platform/v1/tokens", headers=api.basic(email, api.world.admin_password), json={"name": "laptop"}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"token", "name", "id", "organization_id"} and body["name"] == "laptop"
    assert body["organization_id"] == api.world.org.id
    assert body["token"].startswith("hwpat_")
    assert response.headers["cache-control"] == "no-store"
    me = api.client.get(f"/platform/v1/users/{email}", headers=api.as_(body["token"]))
    assert me.status_code == 200 and me.json()["last_login_at"] == api.clock.now.isoformat()


def test_a_token_makes_another_token_for_the_same_person(api: Api) -> None:
    response = api.client.post("/platform/v1/tokens", headers=api.admin)
    assert response.status_code == 201 and response.json()["name"] == "api"
    listed = api.client.get("/platform/v1/tokens", headers=api.as_(response.json()["token"])).json()
    assert {t["name"] for t in listed["tokens"]} == {"test", "api"}
    assert all("token" not in t and "token_digest" not in t for t in listed["tokens"])


@pytest.mark.parametrize(
    "authorization",
    ["Basic !!!", "Basic " + base64.b64encode(b"no-colon").decode(), "Digest abc", "Bearer hwpat_nope"],
)
def test_malformed_credentials_are_401(api: Api, authorization: str) -> None:
    response = api.client.post("/platform/v1/tokens", headers={"Authorization": authorization})
    assert response.status_code == 401 and response.json()["error"]["code"] == "unauthenticated"


def test_wrong_password_and_unknown_user_look_the_same(api: Api) -> None:
    wrong = api.client.post("/platform/v1/tokens", headers=api.basic(api.world.admin.email, "not the password!"))
    unknown = api.client.post("/platform/v1/tokens", headers=api.basic("ghost@example.org", "not the password!"))
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert "not the password" not in wrong.text


def test_pair_throttling_after_five_failures_then_clock_releases(api: Api) -> None:
    email = api.world.admin.email
    for _ in range(login.FREE_FAILURES):
        assert api.client.post("/platform/v1/tokens", headers=api.basic(email, "wrong password!!")).status_code == 401
        api.clock.advance(seconds=1)
    # Even the right password is refused from this address now: the guesser must not learn it was right.
    refused = api.client.post("/platform/v1/tokens", headers=api.basic(email, api.world.admin_password))
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limited"
    assert int(refused.headers["retry-after"]) == int(login.FIRST_LOCKOUT.total_seconds()) - 1
    assert refused.headers["x-ratelimit-remaining"] == "0"
    api.clock.advance(seconds=int(refused.headers["retry-after"]))
    accepted = api.client.post("/platform/v1/tokens", headers=api.basic(email, api.world.admin_password))
    assert accepted.status_code == 201
    with api.db.session() as session:  # a success clears the pair's failures
        assert session.scalar(sa.select(sa.func.count()).select_from(LoginFailure)) == 0


def test_lockouts_double_and_are_capped() -> None:
    assert login.lockout(login.FREE_FAILURES - 1) == timedelta(0)
    assert login.lockout(login.FREE_FAILURES) == login.FIRST_LOCKOUT
    assert login.lockout(login.FREE_FAILURES + 1) == 2 * login.FIRST_LOCKOUT
    assert login.lockout(login.FREE_FAILURES + 100) == login.MAX_LOCKOUT


def test_address_throttling_spans_accounts(api: Api) -> None:
    for i in range(login.ADDRESS_LIMIT):
        response = api.client.post("/platform/v1/tokens", headers=api.basic(f"user{i}@example.org", "wrong password!"))
        assert response.status_code == 401
    refused = api.client.post("/platform/v1/tokens", headers=api.basic(api.world.admin.email, api.world.admin_password))
    assert refused.status_code == 429
    # another address is not affected
    user = _login(api.db, api.world.admin.email, api.world.admin_password, "10.0.0.9", api.clock())
    assert user.id == api.world.admin.id


def _login(db: Database, email: str, password: str, address: str, now: datetime) -> User:
    checker = login.PasswordChecker(CHEAP_PASSWORDS)
    call = login.login(db, checker, email=email, password=password, totp=None, address=address, now=now)
    return anyio.run(lambda: call)


def test_throttling_is_kept_in_the_database(db: Database) -> None:
    """Counts live in the database, so a restart (a new process, here new sessions) does not reset them."""
    now = datetime(2030, 1, 1, tzinfo=UTC)
    with db.session() as session:
        world = make_org(session)
    for _ in range(login.FREE_FAILURES):
        with pytest.raises(Unauthenticated):
            _login(db, world.admin.email, "wrong password!", "10.0.0.1", now)
    with pytest.raises(RateLimited) as throttled:
        _login(db, world.admin.email, world.admin_password, "10.0.0.1", now)
    assert throttled.value.retry_after == int(login.FIRST_LOCKOUT.total_seconds())
    later = now + login.FIRST_LOCKOUT
    _login(db, world.admin.email, world.admin_password, "10.0.0.1", later)


def test_totp_is_required_when_enrolled(api: Api) -> None:
    secret = pyotp.random_base32()
    user, _ = _member(api, "totp@northwind.example.org")
    with api.db.session() as session:
        session.get(User, user.id).totp_secret = secret  # type: ignore[union-attr]
    code = pyotp.TOTP(secret).at(api.clock())
    without = api.client.post("/platform/v1/tokens", headers=api.basic(user.email, PASSWORD))
    wrong = api.client.post(
        "/platform/v1/tokens", headers=api.basic(user.email, PASSWORD, **{"Healthway-TOTP": "000000"})
    )
    right = api.client.post("/platform/v1/tokens", headers=api.basic(user.email, PASSWORD, **{"Healthway-TOTP": code}))
    assert (without.status_code, wrong.status_code, right.status_code) == (401, 401, 201)
    api.clock.advance(minutes=5)  # an old code stops working
    stale = api.client.post("/platform/v1/tokens", headers=api.basic(user.email, PASSWORD, **{"Healthway-TOTP": code}))
    assert stale.status_code == 401


def test_login_rehashes_an_outdated_password_hash(api: Api) -> None:
    user, _ = _member(api, "old@northwind.example.org")
    # The app hashes with CHEAP_PASSWORDS' parameters (time_cost=1): a hash made with others is outdated.
    weak = PasswordHasher(time_cost=2, memory_cost=8 * 1024, parallelism=1).hash(PASSWORD)
    with api.db.session() as session:
        session.get(User, user.id).password_hash = weak  # type: ignore[union-attr]
    assert api.client.post("/platform/v1/tokens", headers=api.basic(user.email, PASSWORD)).status_code == 201
    with api.db.session() as session:
        stored = session.get(User, user.id).password_hash  # type: ignore[union-attr]
    assert stored != weak and CHEAP_PASSWORDS.verify(stored, PASSWORD) == (True, None)
    assert api.client.post("/platform/v1/tokens", headers=api.basic(user.email, PASSWORD)).status_code == 201


# -- tokens --------------------------------------------------------------------------------------------------


def test_revoked_token_stops_working_at_once(api: Api) -> None:
    created = api.client.post("/platform/v1/tokens", headers=api.admin, json={"name": "short-lived"}).json()
    assert api.client.delete(f"/platform/v1/tokens/{created['id']}", headers=api.admin).status_code == 204
    assert api.client.get("/platform/v1/tokens", headers=api.as_(created["token"])).status_code == 401
    listed = api.client.get("/platform/v1/tokens", headers=api.admin).json()["tokens"]
    assert [t["name"] for t in listed] == ["test"]
    assert api.client.delete(f"/platform/v1/tokens/{created['id']}", headers=api.admin).status_code == 404


def test_nobody_revokes_someone_elses_token(api: Api) -> None:
    _, token = _member(api, "m@northwind.example.org", org_role=OrgRole.OWNER)
    admin_tokens = api.client.get("/platform/v1/tokens", headers=api.admin).json()["tokens"]
    response = api.client.delete(f"/platform/v1/tokens/{admin_tokens[0]['id']}", headers=api.as_(token))
    assert response.status_code == 404
    assert api.client.get("/platform/v1/tokens", headers=api.admin).status_code == 200


def test_token_list_pages(api: Api) -> None:
    for i in range(4):
        api.client.post("/platform/v1/tokens", headers=api.admin, json={"name": f"t{i}"})
    first = api.client.get("/platform/v1/tokens", headers=api.admin, params={"limit": 3}).json()
    second = api.client.get(
        "/platform/v1/tokens", headers=api.admin, params={"limit": 3, "cursor": first["next_cursor"]}
    ).json()
    names = [t["name"] for t in first["tokens"] + second["tokens"]]
    assert sorted(names) == ["t0", "t1", "t2", "t3", "test"] and second["next_cursor"] is None


# -- users and roles -----------------------------------------------------------------------------------------


def test_invite_user_then_assign_role_shows_permission_difference(api: Api) -> None:
    created = api.client.post("/platform/v1/users", headers=api.admin, json={"email": "New.Person@Example.org"})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["email"] == "new.person@example.org" and body["org_role"] == "member"
    assert body["status"] == "invited" and "password" not in body  # they join when they accept
    _member(api, "joined.person@example.org")
    shown = api.client.get("/platform/v1/users/joined.person@example.org", headers=api.admin).json()
    assert shown["roles"] == {"development": None, "staging": None, "production": None}

    url = "/platform/v1/users/joined.person@example.org/roles/production"
    engineer = api.client.put(url, headers=api.admin, json={"role": "engineer"}).json()
    assert engineer["previous_role"] is None and engineer["role"] == "engineer"
    assert "keys:write" in engineer["gained"] and engineer["lost"] == []
    analyst = api.client.put(url, headers=api.admin, json={"role": "analyst"}).json()
    assert analyst["gained"] == ["logs:read_payload"]
    assert set(analyst["lost"]) == {
        "sources:write",
        "keys:write",
        "destinations:write",
        "subscriptions:write",
        "logs:replay",
    }
    removed = api.client.put(url, headers=api.admin, json={"role": None}).json()
    assert removed["role"] is None and "logs:read_payload" in removed["lost"]
    shown = api.client.get("/platform/v1/users/joined.person@example.org", headers=api.admin).json()
    assert shown["roles"]["production"] is None and "password" not in shown


def test_assigned_role_takes_effect_for_the_user(api: Api) -> None:
    user, token = _member(api, "eng@northwind.example.org")
    create = {"environment": "staging", "name": "EHR"}
    assert api.client.post("/platform/v1/sources", headers=api.as_(token), json=create).status_code == 403
    url = f"/platform/v1/users/{user.email}/roles/staging"
    assert api.client.put(url, headers=api.admin, json={"role": "engineer"}).status_code == 200
    assert api.client.post("/platform/v1/sources", headers=api.as_(token), json=create).status_code == 201
    assert (
        api.client.post(
            "/platform/v1/sources", headers=api.as_(token), json=create | {"environment": "production"}
        ).status_code
        == 403
    )


def test_role_validation(api: Api) -> None:
    url = f"/platform/v1/users/{api.world.admin.email}/roles"
    assert api.client.put(f"{url}/production", headers=api.admin, json={"role": "superuser"}).status_code == 400
    assert api.client.put(f"{url}/prod", headers=api.admin, json={"role": "viewer"}).status_code == 400
    assert api.client.put(f"{url}/production", headers=api.admin, json={}).status_code == 400
    bad_invite = api.client.post("/platform/v1/users", headers=api.admin, json={"email": "not-an-email"})
    assert bad_invite.status_code == 400


def test_org_admins_invite_members_but_not_admins(api: Api) -> None:
    _, token = _member(api, "orgadmin@northwind.example.org", org_role=OrgRole.ADMIN)
    member = api.client.post("/platform/v1/users", headers=api.as_(token), json={"email": "a@example.org"})
    admin = api.client.post(
        "/platform/v1/users", headers=api.as_(token), json={"email": "b@example.org", "org_role": "admin"}
    )
    assert (member.status_code, admin.status_code) == (201, 403)
    again = api.client.post("/platform/v1/users", headers=api.admin, json={"email": "a@example.org"})
    assert again.status_code == 201 and again.json()["id"] == member.json()["id"]  # one pending invitation
    member_again = api.client.post("/platform/v1/users", headers=api.admin, json={"email": api.world.admin.email})
    assert member_again.status_code == 409


def test_user_list_pages_and_shows_roles(api: Api) -> None:
    for i in range(3):
        _member(api, f"p{i}@northwind.example.org", env_role=EnvRole.VIEWER)
    first = api.client.get("/platform/v1/users", headers=api.admin, params={"limit": 2}).json()
    rest = api.client.get("/platform/v1/users", headers=api.admin, params={"cursor": first["next_cursor"]}).json()
    users = first["users"] + rest["users"]
    assert len(users) == 4 and rest["next_cursor"] is None
    by_email = {u["email"]: u for u in users}
    assert by_email[api.world.admin.email]["org_role"] == "owner"
    assert by_email["p0@northwind.example.org"]["roles"] == dict.fromkeys(
        ["development", "staging", "production"], "viewer"
    )
    assert all("password" not in u and "password_hash" not in u for u in users)


# -- organizations and environments --------------------------------------------------------------------------


def test_organizations_and_settings(api: Api) -> None:
    orgs = api.client.get("/platform/v1/organizations", headers=api.admin).json()["organizations"]
    assert [(o["id"], o["role"], o["allow_legacy_keys"]) for o in orgs] == [(api.world.org.id, "owner", True)]
    url = f"/platform/v1/organizations/{api.world.org.id}"
    changed = api.client.patch(url, headers=api.admin, json={"allow_legacy_keys": False})
    assert changed.status_code == 200 and changed.json()["allow_legacy_keys"] is False
    assert api.client.get(url, headers=api.admin).json()["allow_legacy_keys"] is False


def test_environments_show_the_callers_role(api: Api) -> None:
    user, token = _member(api, "v@northwind.example.org")
    url = f"/platform/v1/users/{user.email}/roles/staging"
    assert api.client.put(url, headers=api.admin, json={"role": "viewer"}).status_code == 200
    envs = api.client.get("/platform/v1/environments", headers=api.as_(token)).json()["environments"]
    assert [(e["name"], e["role"]) for e in envs] == [
        ("development", None),
        ("staging", "viewer"),
        ("production", None),
    ]


# -- isolation between organizations -------------------------------------------------------------------------


def test_nothing_of_one_organization_is_visible_or_changeable_from_another(api: Api) -> None:
    with api.db.session() as session:
        other = make_org(session, name="Lakeview", email="owner@lakeview.example.org")
        theirs = make_source(session, other.envs["development"], "Lakeview EHR")
        make_source(session, api.world.envs["development"], "Northwind EHR")
    them = api.as_(other.admin_token)  # the other organization's owner: every right there, none here
    ours = api.world.org.id
    not_found = [
        api.client.get(f"/platform/v1/organizations/{ours}", headers=them),
        api.client.patch(f"/platform/v1/organizations/{ours}", headers=them, json={"allow_legacy_keys": False}),
        api.client.get("/platform/v1/users", headers=them, params={"organization": ours}),
        api.client.get("/platform/v1/environments", headers=them, params={"organization": ours}),
        api.client.get("/platform/v1/audit-events", headers=them, params={"organization": ours}),
        api.client.get(f"/platform/v1/users/{api.world.admin.email}", headers=them),
        api.client.put(
            f"/platform/v1/users/{api.world.admin.email}/roles/production", headers=them, json={"role": None}
        ),
        api.client.get(
            "/platform/v1/sources", headers=them, params={"environment": "development", "organization": ours}
        ),
    ]
    assert [r.status_code for r in not_found] == [404] * len(not_found)
    assert all(r.json()["error"]["code"] == "not_found" for r in not_found)
    # Their own lists hold only their own things.
    orgs = api.client.get("/platform/v1/organizations", headers=them).json()["organizations"]
    assert [o["id"] for o in orgs] == [other.org.id]
    users = api.client.get("/platform/v1/users", headers=them).json()["users"]
    assert [u["email"] for u in users] == ["owner@lakeview.example.org"]
    sources = api.client.get("/platform/v1/sources", headers=them, params={"environment": "development"}).json()
    assert [s["id"] for s in sources["sources"]] == [theirs.id]
    events = api.client.get("/platform/v1/audit-events", headers=them).json()["audit_events"]
    assert events and all(ours not in str(e) and "northwind" not in str(e).lower() for e in events)
    # And our admin still has everything.
    assert api.client.get(f"/platform/v1/organizations/{ours}", headers=api.admin).json()["allow_legacy_keys"] is True
    assert (
        api.client.get(f"/platform/v1/users/{api.world.admin.email}", headers=api.admin).json()["roles"]["production"]
        == "admin"
    )


def test_a_person_in_two_organizations_picks_one(api: Api) -> None:
    with api.db.session() as session:
        other = organizations.create(
            session, actor=CLI, name="Lakeview", owner_email=api.world.admin.email, passwords=CHEAP_PASSWORDS
        )
    # The token was made in the first organization: it acts there, and nowhere else.
    assert api.client.get("/platform/v1/users", headers=api.admin).status_code == 200
    elsewhere = api.client.get("/platform/v1/users", headers=api.admin, params={"organization": other.organization.id})
    assert elsewhere.status_code == 404
    login = api.basic(api.world.admin.email, api.world.admin_password)
    ambiguous = api.client.post("/platform/v1/tokens", headers=login)
    assert ambiguous.status_code == 400 and "organization" in ambiguous.json()["error"]["message"]
    made = api.client.post("/platform/v1/tokens", headers=login, json={"organization": other.organization.id})
    assert made.status_code == 201 and made.json()["organization_id"] == other.organization.id
    picked = api.client.get("/platform/v1/users", headers=api.as_(made.json()["token"]))
    assert picked.status_code == 200 and [u["email"] for u in picked.json()["users"]] == [api.world.admin.email]
