"""Issue 14, destinations and outbound connections, through the Platform API and real sockets on loopback only.

A ``FakeResolver`` given to ``build()`` answers every DNS question, so a host name can "resolve" to a refused
address without any packet leaving the machine.
"""

from __future__ import annotations

import asyncio
import builtins
import io
import ipaddress
import json
import os
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from fastapi.testclient import TestClient
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from healthway.app import build
from healthway.delivery.senders import Target
from healthway.delivery.senders.mllp import MllpSender
from healthway.delivery.senders.sftp import SftpSender
from healthway.delivery.senders.webhook import WebhookSender
from healthway.domain.delivery_states import AttemptOutcome
from healthway.domain.outbound import OutboundPolicy
from healthway.net.outbound import OutboundGuard
from healthway.services import destinations
from healthway.settings import Settings
from healthway.storage.db import Database
from healthway.storage.models import Attempt, AuditEvent, Base, Destination
from healthway.testing import FakeResolver, http_app, loopback_guard
from tests.factories import make_access_token, make_org, make_source
from tests.integration.test_delivery_senders import JSON_MESSAGE
from tests.integration.test_intake import FIXTURES, NEW_PATIENT, Env
from tests.integration.test_mllp_tls import hl7_message, write_pki

QUERY = (FIXTURES / "datamodel/patientsearch_query.json").read_bytes()
REFUSED = "the destination's address is not allowed"
PATHS_REFUSED = "TLS material is given by value (ca_pem, cert_pem, key_pem as PEM text), not as paths"
FINGERPRINT = "SHA256:" + "A" * 43


@contextmanager
def gateway(db: Database, resolver: FakeResolver | None = None, **settings: Any) -> Iterator[Env]:
    """A Healthway app over ``db`` with these settings and, when given, a resolver injected through build()."""
    with db.session() as session:
        world = make_org(session)
        dev = world.envs["development"]
        ehr, lis = make_source(session, dev, "EHR"), make_source(session, dev, "LIS")
        token = make_access_token(session, dev)
        ehr_token = make_access_token(session, dev, sources=[ehr])
    app = http_app(build(Settings(_env_file=None, **settings), db=db, resolver=resolver))
    with TestClient(app) as client:
        yield Env(client, db, world, ehr, lis, token, ehr_token)


def create(env: Env, **fields: Any) -> Any:
    body = {"environment": "development", "name": "D", **fields}
    return env.client.post("/platform/v1/destinations", json=body, headers=admin(env))


def admin(env: Env) -> dict[str, str]:
    return {"Authorization": f"Bearer {env.world.admin_token}"}


def subscribe(env: Env, destination_id: str) -> None:
    body = {"source": env.ehr.id, "destination": destination_id}
    assert env.client.post("/platform/v1/subscriptions", json=body, headers=admin(env)).status_code == 201


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_pki(tmp_path_factory.mktemp("pki"))


# -- item 1: TLS material by value; the server never opens a path its caller names ----------------------------


@contextmanager
def recorded_opens(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every path opened through open(), os.open() or an SSLContext file loader while the block runs."""
    opened: list[str] = []

    def spy(real: Any, *, first: int = 0) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if len(args) > first and isinstance(args[first], str | bytes | os.PathLike):
                opened.append(os.path.realpath(os.fsdecode(args[first])))
            return real(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(builtins, "open", spy(builtins.open))
    monkeypatch.setattr(io, "open", spy(io.open))
    monkeypatch.setattr(os, "open", spy(os.open))
    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", spy(ssl.SSLContext.load_verify_locations, first=1))
    monkeypatch.setattr(ssl.SSLContext, "load_cert_chain", spy(ssl.SSLContext.load_cert_chain, first=1))
    yield opened
    monkeypatch.undo()


def test_the_api_refuses_tls_file_paths_without_opening_them(
    db: Database, pki: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = Path(db.url.database or "") if db.is_sqlite else tmp_path / "healthway.db"
    named = [database, Path(f"{database}-wal"), Path(f"{database}-shm"), pki / "ca.pem", tmp_path / "missing.pem"]
    with gateway(db, allow_loopback_destinations=True) as env:
        base = {"kind": "mllp", "host": "lab.example.org", "port": 2575, "tls": True}
        with recorded_opens(monkeypatch) as opened:
            answers = [create(env, **base, **{field: str(path)}) for path in named for field in ("ca_file", "key_file")]
            answers.append(create(env, **base, cert_file=str(pki / "client.pem"), key_file=str(pki / "client.key")))
        assert {(a.status_code, a.json()["error"]["message"]) for a in answers} == {(400, PATHS_REFUSED)}
        assert not {os.path.realpath(p) for p in named} & set(opened), opened
        with env.db.session() as session:
            assert session.scalar(sa.select(sa.func.count()).select_from(Destination)) == 0


def test_tls_material_is_taken_by_value_and_the_key_is_never_shown(db: Database, pki: Path) -> None:
    pem = {"ca_pem": "ca.pem", "cert_pem": "client.pem", "key_pem": "client.key"}
    material = {field: (pki / name).read_text() for field, name in pem.items()}
    with gateway(db) as env:
        created = create(env, kind="mllp", host="lab.example.org", port=2575, tls=True, **material)
        assert created.status_code == 201, created.text
        config = created.json()["config"]
        assert config["ca_pem"] == material["ca_pem"] and config["cert_pem"] == material["cert_pem"]
        assert config["has_key_pem"] is True and "key_pem" not in config
        listed = env.client.get("/platform/v1/destinations?environment=development", headers=admin(env)).text
        assert "PRIVATE KEY" not in listed + created.text
        wrong = create(env, kind="mllp", host="lab.example.org", port=2575, tls=True, ca_pem=material["key_pem"])
        assert wrong.status_code == 400 and "BEGIN" not in wrong.text and "ca_pem" in wrong.text


def test_the_migration_converts_stored_paths_but_never_opens_the_database(
    tmp_path: Path, pki: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "data").mkdir()
    db = Database(f"sqlite:///{tmp_path / 'data' / 'healthway.db'}")
    command.upgrade(db._alembic_config(), "0003b")  # the schema before 0003c
    database = str(tmp_path / "data" / "healthway.db")
    with db.session() as session:
        env = make_org(session).envs["development"]
        legacy = {"host": "lab", "port": 2575, "tls": True}
        files = {
            "ca_file": str(pki / "ca.pem"),
            "cert_file": str(pki / "client.pem"),
            "key_file": str(pki / "client.key"),
        }
        good = Destination(environment_id=env.id, name="good", kind="mllp", config=legacy | files)
        evil = Destination(environment_id=env.id, name="evil", kind="mllp", config=legacy | {"ca_file": database})
        session.add_all([good, evil])
    with recorded_opens(monkeypatch) as opened:
        db.migrate()
    assert database not in opened and f"{database}-wal" not in opened
    with db.session() as session:
        configs = {d.name: d.config for d in session.scalars(sa.select(Destination))}
    db.dispose()
    assert configs["good"] == legacy | {
        "ca_pem": (pki / "ca.pem").read_text(),
        "cert_pem": (pki / "client.pem").read_text(),
        "key_pem": (pki / "client.key").read_text(),
    }
    assert configs["evil"] == legacy | {"ca_file": database}  # left alone: its attempts say files are not read


# -- item 2: the outbound-address policy, at creation ---------------------------------------------------------

WEBHOOK = {"kind": "webhook"}
DEFAULTS: dict[str, Any] = {}
HTTP_ONLY = {"allow_http_destinations": True}
BOTH: dict[str, Any] = {"allow_http_destinations": True, "allow_loopback_destinations": True}


REFUSALS: list[tuple[dict[str, Any], dict[str, Any]]] = [
    (DEFAULTS, WEBHOOK | {"url": "https://169.254.169.254/latest/meta-data/"}),
    (DEFAULTS, WEBHOOK | {"url": "https://[::1]:8443/hook"}),
    (DEFAULTS, WEBHOOK | {"url": "https://127.0.0.1/hook"}),
    (DEFAULTS, WEBHOOK | {"url": "https://[::ffff:127.0.0.1]/hook"}),
    (DEFAULTS, WEBHOOK | {"url": "https://localhost/hook"}),
    (DEFAULTS, WEBHOOK | {"url": "http://partner.example.org/hook"}),  # plain http without the opt-in
    (DEFAULTS, {"kind": "fhir", "url": "http://fhir.example.org/r4"}),
    (BOTH, WEBHOOK | {"url": "https://0.0.0.0/hook"}),  # never, whatever the opt-ins
    (BOTH, WEBHOOK | {"url": "https://224.0.0.1/hook"}),
    (BOTH, WEBHOOK | {"url": "https://240.0.0.1/hook"}),
    ({"destination_deny_networks": "10.0.0.0/8"}, WEBHOOK | {"url": "https://10.1.2.3/hook"}),
    (DEFAULTS, {"kind": "fhir", "url": "https://fhir.example.org/r4", "token_url": "https://169.254.169.254/t"}),
    (HTTP_ONLY, {"kind": "fhir", "url": "https://fhir.example.org/r4", "token_url": "http://127.0.0.1/t"}),
    (DEFAULTS, {"kind": "mllp", "host": "127.0.0.1", "port": 2575}),
    (DEFAULTS, {"kind": "mllp", "host": "::1", "port": 2575}),
    (
        DEFAULTS,
        {"kind": "sftp", "host": "169.254.169.254", "port": 22, "username": "u", "password": "p"}
        | {"host_key_sha256": FINGERPRINT},
    ),
]


def test_refused_addresses_and_schemes_at_creation(db: Database) -> None:
    for settings in ({}, HTTP_ONLY, BOTH, {"destination_deny_networks": "10.0.0.0/8"}):
        with gateway(db, **settings) as env:
            for fields in (fields for wanted, fields in REFUSALS if wanted == settings):
                response = create(env, **fields)
                assert response.status_code == 400, (settings, fields, response.text)
                assert response.json()["error"]["code"] == "invalid_request"
        _truncate_orgs(db)
    with db.session() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Destination)) == 0


def _truncate_orgs(db: Database) -> None:
    """A fresh start for the next gateway (each makes the same organization)."""
    with db.session() as session:
        for table in reversed(Base.metadata.sorted_tables):
            session.execute(table.delete())


def test_allowed_at_creation_private_ranges_and_loopback_with_the_opt_in(db: Database) -> None:
    with gateway(db, destination_deny_networks="192.168.0.0/16") as env:
        assert create(env, **WEBHOOK, url="https://10.1.2.3/hook").status_code == 201  # hospital networks
        assert create(env, kind="mllp", host="172.16.0.5", port=2575).status_code == 201
        assert create(env, **WEBHOOK, url="https://hooks.example.org/in").status_code == 201


def test_loopback_and_plain_http_are_allowed_with_the_opt_ins(db: Database) -> None:
    with gateway(db, **BOTH) as env:
        assert create(env, **WEBHOOK, url="http://127.0.0.1:9/hook").status_code == 201
        assert create(env, **WEBHOOK, url="https://169.254.169.254/hook").status_code == 201


# -- item 2: at send time, a host name that resolves to a refused address -------------------------------------


def _attempt(db: Database, timeout: float = 10) -> Attempt:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db.session() as session:
            attempt = session.scalars(sa.select(Attempt)).first()
            if attempt is not None:
                session.expunge(attempt)
                return attempt
        time.sleep(0.02)
    raise AssertionError("no delivery attempt was made")


@pytest.mark.parametrize("allow_loopback", [False, True])
def test_a_webhook_whose_name_resolves_to_loopback_is_not_connected_to(
    db: Database, httpserver: HTTPServer, allow_loopback: bool
) -> None:
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    resolver = FakeResolver({"hook.test": ["127.0.0.1"]})
    with gateway(db, resolver, allow_http_destinations=True, allow_loopback_destinations=allow_loopback) as env:
        created = create(env, **WEBHOOK, url=f"http://hook.test:{httpserver.port}/hook")
        assert created.status_code == 201, created.text  # a name: checked when connecting
        subscribe(env, created.json()["id"])
        assert env.post(NEW_PATIENT).status_code == 202
        attempt = _attempt(db)
    assert "hook.test" in resolver.asked
    if allow_loopback:  # the control: the same name, allowed, is delivered to the address the resolver gave
        assert attempt.outcome == "delivered" and len(httpserver.log) == 1
    else:
        assert (attempt.outcome, attempt.detail) == (AttemptOutcome.FAILED.value, REFUSED)
        assert httpserver.log == []


def test_synchronous_requests_to_refused_addresses_are_502_without_a_connection(
    db: Database, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/q", method="POST").respond_with_json({"ok": True})
    httpserver.expect_request("/fhir/Patient/1").respond_with_json({"resourceType": "Patient"})
    resolver = FakeResolver({"query.test": ["127.0.0.1"], "fhir.test": ["::ffff:127.0.0.1"]})
    with gateway(db, resolver, allow_http_destinations=True) as env:
        for fields in (
            {"kind": "webhook", "url": f"http://query.test:{httpserver.port}/q"},
            {"kind": "fhir", "url": f"http://fhir.test:{httpserver.port}/fhir"},
        ):
            created = create(env, **fields)
            assert created.status_code == 201, created.text
            subscribe(env, created.json()["id"])
        query = env.post(QUERY)
        read = env.client.get("/fhir/R4/Patient/1", headers={"Authorization": f"Bearer {env.ehr_token}"})
    assert query.status_code == 502 and REFUSED in query.json()["error"]["message"]
    assert read.status_code == 502 and read.json()["resourceType"] == "OperationOutcome"
    assert httpserver.log == []


def test_a_token_url_resolving_into_a_denied_network_is_never_asked(db: Database, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/fhir/Patient/1").respond_with_json({"resourceType": "Patient"})
    resolver = FakeResolver({"fhir.test": ["127.0.0.1"], "auth.test": ["10.9.9.9"]})
    settings = BOTH | {"destination_deny_networks": "10.0.0.0/8"}
    with gateway(db, resolver, **settings) as env:
        fields = {"url": f"http://fhir.test:{httpserver.port}/fhir", "token_url": "http://auth.test/token"}
        created = create(env, kind="fhir", client_id="gw", client_secret="s3cret", **fields)
        assert created.status_code == 201, created.text
        subscribe(env, created.json()["id"])
        read = env.client.get("/fhir/R4/Patient/1", headers={"Authorization": f"Bearer {env.ehr_token}"})
    assert read.status_code == 502 and "s3cret" not in read.text
    assert httpserver.log == [] and resolver.asked == ["auth.test"]


def test_mllp_and_sftp_senders_do_not_connect_to_a_refused_address() -> None:
    async def go() -> tuple[list[str], int]:
        connections = 0

        def count(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal connections
            connections += 1
            writer.close()

        server = await asyncio.start_server(count, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        guard = OutboundGuard(OutboundPolicy(), FakeResolver({"lab.test": ["127.0.0.1"]}))
        mllp, sftp = MllpSender(guard=guard, timeout=2), SftpSender(guard=guard, timeout=2)
        sftp_config = {"host": "lab.test", "port": port, "username": "u", "password": "p"}
        try:
            results = [
                await mllp.send(Target("m", "mllp", {"host": "lab.test", "port": port}), hl7_message("R1")),
                await mllp.send(Target("m2", "mllp", {"host": "127.0.0.1", "port": port}), hl7_message("R2")),
                await sftp.send(Target("s", "sftp", sftp_config | {"host_key_sha256": FINGERPRINT}), hl7_message("R3")),
            ]
        finally:
            await mllp.aclose()
            server.close()
            await server.wait_closed()
        assert all(r.outcome is AttemptOutcome.FAILED for r in results)
        return [r.detail for r in results], connections

    details, connections = asyncio.run(go())
    assert details == [REFUSED] * 3 and connections == 0


def test_the_policy_judges_each_kind_of_address() -> None:
    strict, loopback = OutboundPolicy(), OutboundPolicy(allow_loopback=True)
    denied = OutboundPolicy(deny_networks=(ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8")))
    for address in ("127.0.0.1", "::1", "169.254.169.254", "fe80::1", "::ffff:169.254.169.254"):
        assert not strict.allows(address) and loopback.allows(address), address
    for address in ("0.0.0.0", "0.1.2.3", "::", "224.0.0.1", "ff02::1", "240.0.0.1", "255.255.255.255"):
        assert not loopback.allows(address), address
    for address in ("10.1.2.3", "192.168.1.1", "172.16.0.1", "fd12::1", "93.184.215.14", "2606:4700::1"):
        assert strict.allows(address), address
    assert not denied.allows("10.1.2.3") and not denied.allows("::ffff:10.1.2.3") and not denied.allows("fd12::1")


# -- item 16: synchronous answers are streamed with a cap ------------------------------------------------------

CAP = 64 * 1024
CHUNK = 64 * 1024
HUGE_CHUNKS = 1600  # 100 MiB if anybody read it all


def test_answers_larger_than_the_cap_are_502_and_reading_stops_at_the_cap(db: Database, httpserver: HTTPServer) -> None:
    produced: list[int] = []

    def huge(_: Request) -> Response:
        def chunks() -> Iterator[bytes]:
            for _ in range(HUGE_CHUNKS):
                produced.append(CHUNK)
                yield b"x" * CHUNK

        return Response(chunks(), content_type="application/json")  # chunked: no Content-Length to refuse early

    httpserver.expect_request("/q", method="POST").respond_with_handler(huge)
    httpserver.expect_request("/fhir/Patient/1").respond_with_handler(huge)
    with gateway(db, max_message_bytes=CAP, **BOTH) as env:
        for fields in (
            {"kind": "webhook", "url": httpserver.url_for("/q")},
            {"kind": "fhir", "url": httpserver.url_for("/fhir")},
        ):
            subscribe(env, create(env, **fields).json()["id"])
        query = env.post(QUERY)
        read = env.client.get("/fhir/R4/Patient/1", headers={"Authorization": f"Bearer {env.ehr_token}"})
    assert query.status_code == 502 and f"larger than {CAP} bytes" in query.json()["error"]["message"]
    assert read.status_code == 502 and f"larger than {CAP} bytes" in json.dumps(read.json())
    # Both peers were cut off long before the end: the gateway stopped reading at the cap.
    assert sum(produced) < 2 * 16 * 2**20, sum(produced)


def test_an_answer_within_the_cap_is_returned_whole(db: Database, httpserver: HTTPServer) -> None:
    body = json.dumps({"resourceType": "Patient", "pad": "x" * (CAP - 100)})
    httpserver.expect_request("/fhir/Patient/1").respond_with_data(body, content_type="application/fhir+json")
    with gateway(db, max_message_bytes=CAP, **BOTH) as env:
        subscribe(env, create(env, kind="fhir", url=httpserver.url_for("/fhir")).json()["id"])
        read = env.client.get("/fhir/R4/Patient/1", headers={"Authorization": f"Bearer {env.ehr_token}"})
    assert read.status_code == 200 and read.text == body


# -- item 20: control characters in values that become headers -------------------------------------------------


HEADER_INJECTIONS: list[dict[str, Any]] = [
    {"kind": "webhook", "url": "https://hooks.example.org/in", "verification_token": "vt\r\nX-Injected: 1"},
    {"kind": "webhook", "url": "https://hooks.example.org/in", "verification_token": "vt\x00"},
    {"kind": "webhook", "url": "https://hooks.example.org/in\r\nX-Injected: 1"},
    {"kind": "fhir", "url": "https://fhir.example.org/r4", "token_url": "https://auth.example.org/t"}
    | {"client_id": "gw\nX-Injected: 1", "client_secret": "s"},
    {"kind": "fhir", "url": "https://fhir.example.org/r4", "token_url": "https://auth.example.org/t"}
    | {"client_id": "gw", "client_secret": "s\r\n", "scope": "system/*.read"},
    {"kind": "fhir", "url": "https://fhir.example.org/r4", "token_url": "https://auth.example.org/t"}
    | {"client_id": "gw", "client_secret": "s", "scope": "system/*.read\tx"},
]


def test_control_characters_in_header_values_are_refused(db: Database) -> None:
    with gateway(db) as env:
        for fields in HEADER_INJECTIONS:
            response = create(env, **fields)
            assert response.status_code == 400, (fields, response.text)
            assert "control characters" in response.json()["error"]["message"]
            assert "X-Injected" not in response.text


# -- item 12: SFTP host keys, given or pinned on first use -------------------------------------------------------


def test_an_sftp_fingerprint_is_optional_but_must_be_one(db: Database) -> None:
    fields = {"kind": "sftp", "host": "files.example.org", "port": 22, "username": "u", "password": "pw"}
    with gateway(db) as env:
        unpinned = create(env, **fields)
        assert unpinned.status_code == 201 and "host_key_sha256" not in unpinned.json()["config"]
        bad = create(env, **fields, name="bad", host_key_sha256="MD5:ab:cd")
        assert bad.status_code == 400 and "host_key_sha256 must be a SHA256 fingerprint" in bad.text
        pinned = create(env, **fields, name="pinned", host_key_sha256=FINGERPRINT)
        assert pinned.status_code == 201 and pinned.json()["config"]["host_key_sha256"] == FINGERPRINT


def test_the_first_pin_wins_and_is_audited(db: Database) -> None:
    with db.session() as session:
        env = make_org(session).envs["development"]
        config = {"host": "files.example.org", "port": 22, "username": "u", "password": "pw"}
        destination = Destination(environment_id=env.id, name="drop", kind="sftp", config=config)
        session.add(destination)
    with db.session() as session:
        assert destinations.pin_host_key(session, destination.id, "SHA256:first") == "SHA256:first"
    with db.session() as session:
        assert destinations.pin_host_key(session, destination.id, "SHA256:second") == "SHA256:first"
        stored = session.get(Destination, destination.id)
        assert stored is not None and stored.config == config | {"host_key_sha256": "SHA256:first"}
        events = session.scalars(sa.select(AuditEvent).where(AuditEvent.subject_id == destination.id)).all()
        assert [(e.action, e.actor_id, e.summary["host_key_sha256"]) for e in events] == [
            ("destination:update", "delivery worker", "SHA256:first")
        ]


def test_a_stored_token_with_a_line_break_is_a_final_failure_not_a_blocked_lane(httpserver: HTTPServer) -> None:
    """A verification token stored before control characters were refused: never sent, and not retried for ever."""
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    config = {"url": httpserver.url_for("/hook"), "verification_token": "vt\r\nX-Injected: 1"}

    async def go() -> Any:
        sender = WebhookSender(guard=loopback_guard(), timeout=5)
        try:
            return await sender.send(Target("w", "webhook", config), JSON_MESSAGE)
        finally:
            await sender.aclose()

    result = asyncio.run(go())
    assert result.outcome is AttemptOutcome.REJECTED and "verification-token header" in result.detail
    assert "X-Injected" not in result.detail and httpserver.log == []
