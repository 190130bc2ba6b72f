"""Legacy API keys: authenticate, refresh rotation and reuse detection, secret rotation, throttling."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import limits
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from healthway.app import build
from healthway.domain.actors import CLI
from healthway.errors import Conflict, PermissionDenied
from healthway.services import legacy_keys, organizations, ratelimit
from healthway.settings import Settings
from healthway.storage.db import Database
from healthway.storage.models import LegacyKey, Source
from healthway.testing import http_app, settable_rate_limiter
from tests.factories import World, make_org, make_source

SMALL = b'{"Meta": {"DataModel": "PatientAdmin", "EventType": "NewPatient"}}'


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class Env:
    client: TestClient
    db: Database
    clock: FakeClock
    world: World
    source: Source
    other: Source
    api_key: str
    secret: str

    def authenticate(self, api_key: str | None = None, secret: str | None = None) -> Any:
        return self.client.post(
            "/auth/authenticate", json={"apiKey": api_key or self.api_key, "secret": secret or self.secret}
        )

    def refresh(self, refresh_token: str, api_key: str | None = None) -> Any:
        return self.client.post(
            "/auth/refreshToken", json={"apiKey": api_key or self.api_key, "refreshToken": refresh_token}
        )

    def send(self, token: str, **headers: str) -> int:
        response = self.client.post("/endpoint", content=SMALL, headers={"Authorization": f"Bearer {token}", **headers})
        return response.status_code


def make_env(db: Database, **overrides: Any) -> Iterator[Env]:
    clock = FakeClock()
    with db.session() as session:
        world = make_org(session)
        dev = world.envs["development"]
        source, other = make_source(session, dev, "EHR"), make_source(session, dev, "LIS")
        key, secret = legacy_keys.create(session, actor=CLI, source=source, environment=dev)
    with TestClient(http_app(build(Settings(_env_file=None), db=db, clock=clock, **overrides))) as client:
        yield Env(client, db, clock, world, source, other, key.api_key, secret)


@pytest.fixture
def env(db: Database) -> Iterator[Env]:
    yield from make_env(db)


def test_authenticate_returns_redox_shape(env: Env) -> None:
    response = env.authenticate()
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"accessToken", "expires", "refreshToken"}
    assert body["accessToken"].startswith("hwat_") and body["refreshToken"].startswith("hwrt_")
    expires = datetime.fromisoformat(body["expires"].replace("Z", "+00:00"))
    assert abs(expires - (env.clock.now + timedelta(hours=24))) < timedelta(seconds=1)
    assert body["expires"].endswith("Z")
    assert response.headers["deprecation"] == "true"
    assert env.send(body["accessToken"]) == 202
    with env.db.session() as session:
        key = session.get(LegacyKey, env.api_key)
        assert key is not None and key.last_used_at is not None and env.secret not in key.secret_digest


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"apiKey": "wrong", "secret": "x"}, 401),
        ({"secret": "x"}, 400),
        ({"apiKey": 5, "secret": "x"}, 400),
        ([], 400),
    ],
)
def test_bad_authenticate_bodies(env: Env, body: Any, status: int) -> None:
    response = env.client.post("/auth/authenticate", json=body)
    assert response.status_code == status
    assert response.headers["deprecation"] == "true"


def test_wrong_secret_and_unknown_key_answer_the_same(env: Env) -> None:
    wrong_secret = env.authenticate(secret="hwsk_" + "A" * 43)
    unknown_key = env.authenticate(api_key="00000000-0000-0000-0000-000000000000")
    assert wrong_secret.status_code == unknown_key.status_code == 401
    assert wrong_secret.json() == unknown_key.json()
    assert env.secret not in wrong_secret.text


def test_malformed_and_oversized_bodies(env: Env) -> None:
    assert env.client.post("/auth/authenticate", content=b"{not json").status_code == 400
    big = env.client.post("/auth/authenticate", content=b'{"apiKey": "' + b"a" * 70000 + b'"}')
    assert big.status_code == 413


def test_access_token_expires_after_24_hours(env: Env) -> None:
    token = env.authenticate().json()["accessToken"]
    env.clock.advance(hours=23, minutes=59)
    assert env.send(token) == 202
    env.clock.advance(minutes=2)
    assert env.send(token) == 401


def test_refresh_rotates_and_reuse_revokes_the_family(env: Env) -> None:
    first = env.authenticate().json()
    second = env.refresh(first["refreshToken"]).json()
    assert second["refreshToken"] != first["refreshToken"] and second["accessToken"] != first["accessToken"]
    third = env.refresh(second["refreshToken"]).json()
    assert env.send(third["accessToken"]) == 202
    # Presenting a spent refresh token: refused, and every token of the family stops working.
    reuse = env.refresh(first["refreshToken"])
    assert reuse.status_code == 401
    assert env.send(third["accessToken"]) == 401
    assert env.send(first["accessToken"]) == 401
    assert env.refresh(third["refreshToken"]).status_code == 401
    # A fresh authentication starts a new, healthy family.
    assert env.send(env.authenticate().json()["accessToken"]) == 202


def test_refresh_token_of_another_key_or_expired(env: Env) -> None:
    pair = env.authenticate().json()
    assert env.refresh(pair["refreshToken"], api_key="00000000-0000-0000-0000-000000000000").status_code == 401
    env.clock.advance(days=30, seconds=1)
    assert env.refresh(pair["refreshToken"]).status_code == 401


def test_rotating_the_secret_stops_the_old_one_and_its_tokens(env: Env) -> None:
    token = env.authenticate().json()["accessToken"]
    with env.db.session() as session:
        key = session.get(LegacyKey, env.api_key)
        assert key is not None
        new_secret = legacy_keys.rotate_secret(session, actor=CLI, key=key, now=env.clock())
    assert env.authenticate().status_code == 401
    assert env.send(token) == 401
    assert env.send(env.authenticate(secret=new_secret).json()["accessToken"]) == 202


def test_source_selection_for_legacy_tokens(env: Env) -> None:
    token = env.authenticate().json()["accessToken"]
    assert env.send(token) == 202
    assert env.send(token, **{"Healthway-Source-Id": env.source.id}) == 202
    assert env.send(token, **{"Redox-Source-Id": env.source.id}) == 202
    assert env.send(token, **{"Healthway-Source-Id": env.other.id}) == 403
    assert env.send(token, **{"Healthway-Source-Id": "nope"}) == 403


def test_one_key_per_source_and_the_org_switch(env: Env) -> None:
    with env.db.session() as session:
        dev = env.world.envs["development"]
        with pytest.raises(Conflict):
            legacy_keys.create(session, actor=CLI, source=env.source, environment=dev)
        org = organizations.get(session, env.world.org.id)
        assert org is not None
        organizations.set_allow_legacy_keys(session, actor=CLI, organization=org, allow=False)
    with env.db.session() as session, pytest.raises(PermissionDenied, match="turned off"):
        legacy_keys.create(session, actor=CLI, source=env.other, environment=env.world.envs["development"])
    refused = env.authenticate()  # turning legacy keys off stops existing ones too (issue 14)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "legacy_keys_disabled"


def test_failed_attempts_are_throttled_per_key_then_recover(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ratelimit, "FAILURES_PER_KEY", limits.parse("3/2 seconds"))
    limiter, windows = settable_rate_limiter()
    for env in make_env(db, rate_limiter=limiter):
        for _ in range(3):
            assert env.authenticate(secret="hwsk_wrong").status_code == 401
        throttled = env.authenticate(secret="hwsk_wrong")
        assert throttled.status_code == 429
        assert int(throttled.headers["retry-after"]) == 2 and throttled.headers["x-ratelimit-limit"] == "3"
        assert env.authenticate().status_code == 200  # the right secret is never refused for failures
        windows.advance(1)
        assert env.authenticate(secret="hwsk_wrong").status_code == 429  # still within the window
        windows.advance(1)
        assert env.authenticate(secret="hwsk_wrong").status_code == 401


def test_platform_api_lists_sources_still_on_legacy_keys(env: Env) -> None:
    headers = {"Authorization": f"Bearer {env.world.admin_token}"}
    listed = env.client.get("/platform/v1/legacy-keys?environment=development", headers=headers).json()
    assert [k["source_id"] for k in listed["legacy_keys"]] == [env.source.id]
    assert listed["legacy_keys"][0]["last_used_at"] is None
    env.authenticate()
    listed = env.client.get("/platform/v1/legacy-keys?environment=development", headers=headers).json()
    assert listed["legacy_keys"][0]["last_used_at"] is not None
    created = env.client.post(f"/platform/v1/sources/{env.other.id}/legacy-key", headers=headers)
    assert created.status_code == 201 and created.json()["secret"].startswith("hwsk_")
    rotated = env.client.post(f"/platform/v1/legacy-keys/{env.api_key}/rotate-secret", headers=headers)
    assert rotated.status_code == 200 and rotated.json()["secret"] != env.secret
    with env.db.session() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(LegacyKey)) == 2
