"""Issue 14 (items 8 and 18) through the real ``healthway`` command: set-password, remove, replay disclosure."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from healthway.domain.passwords import Passwords
from healthway.storage.db import Database
from healthway.storage.models import AuditEvent, Log, Source, User
from healthway.testing import CHEAP_PASSWORDS
from tests.e2e.conftest import Cli


def _json(cli: Cli, *args: str) -> dict[str, Any]:
    return dict(json.loads(cli.invoke(*args, "--json").stdout))


def _db(cli: Cli) -> Database:
    return Database(f"sqlite:///{cli.env['HEALTHWAY_DATA_DIR']}/healthway.db")


def test_set_password_generates_a_must_change_one_or_takes_a_file(cli: Cli, tmp_path: Path) -> None:
    init = _json(cli, "init", "--org", "Northwind", "--admin-email", "admin@example.org")
    created = _json(cli, "user", "create", "--email", "nurse@example.org")
    assert set(created) == {"email", "password"}
    generated = _json(cli, "user", "set-password", "--email", "nurse@example.org")
    assert generated["must_change"] is True and generated["password"] != created["password"]
    secret = tmp_path / "pw"
    secret.write_text("a passphrase the nurse chose\n")
    assert _json(cli, "user", "set-password", "--email", "nurse@example.org", "--password-file", str(secret)) == {
        "email": "nurse@example.org"
    }
    db = _db(cli)
    with db.session() as session:
        nurse = session.scalar(sa.select(User).where(User.email == "nurse@example.org"))
        admin = session.scalar(sa.select(User).where(User.email == "admin@example.org"))
        assert nurse is not None and admin is not None
        assert Passwords().verify(nurse.password_hash, "a passphrase the nurse chose")[0]
        assert not nurse.password_must_change
        assert not admin.password_must_change  # init's password is the operator's own: it keeps working
        assert Passwords().verify(admin.password_hash, str(init["admin_password"]))[0]
        assert CHEAP_PASSWORDS.verify(admin.password_hash, str(init["admin_password"])) == (True, None)  # in-process
        changes = session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "user:password_change")).all()
    db.dispose()
    assert len(changes) == 2
    cli.invoke("user", "remove", "--email", "nurse@example.org")
    listed = _json(cli, "user", "list")
    assert [u["email"] for u in listed["users"]] == ["admin@example.org"]


def test_cli_replay_to_a_new_destination_is_audited_as_a_disclosure(cli: Cli) -> None:
    cli.invoke("init", "--org", "Northwind", "--admin-email", "admin@example.org")
    source = _json(cli, "source", "create", "--env", "production", "--name", "EHR")
    hook = ["--kind", "webhook", "--url", "http://127.0.0.1:9/hook"]
    allow: dict[str, Any] = {"HEALTHWAY_ALLOW_LOOPBACK_DESTINATIONS": "1", "HEALTHWAY_ALLOW_HTTP_DESTINATIONS": "1"}
    result = cli.invoke("destination", "create", "--env", "production", "--name", "Hook", *hook, "--json", **allow)
    destination = json.loads(result.stdout)
    payload = b'{"Meta": {"DataModel": "PatientAdmin", "EventType": "NewPatient"}}'
    db = _db(cli)
    environment_id = _environment_of(db, str(source["id"]))
    with db.session() as session:
        log = Log(
            environment_id=environment_id,
            source_id=str(source["id"]),
            transport="http",
            content_type="application/json",
            sha256=hashlib.sha256(payload).hexdigest(),
            size=len(payload),
            payload=payload,
        )
        session.add(log)
        session.flush()
        log_id = log.id
    replayed = _json(cli, "logs", "replay", log_id, "--destination", str(destination["id"]))
    assert [d["destination_id"] for d in replayed["deliveries"]] == [destination["id"]]
    with db.session() as session:
        [disclosure] = session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "payload:view")).all()
        assert disclosure.subject_id == log_id and disclosure.summary["via"] == "replay"
    db.dispose()


def _environment_of(db: Database, source_id: str) -> str:
    with db.read_session() as session:
        source = session.get(Source, source_id)
        assert source is not None
        return source.environment_id
