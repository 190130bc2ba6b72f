"""Durable before acknowledged, through a real server process killed with SIGKILL."""

from __future__ import annotations

import json
import signal
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.e2e.conftest import Cli, start_server

BODY = b'{"Meta": {"DataModel": "PatientAdmin", "EventType": "NewPatient"}, "Patient": {"Identifiers": []}}'


def _legacy_source(cli: Cli) -> dict[str, str]:
    cli.run("init", "--admin-email", "admin@example.org")
    source = json.loads(cli.run("source", "create", "--env", "development", "--name", "EHR", "--json").stdout)
    key = json.loads(cli.run("key", "create-legacy", "--source", source["id"], "--json").stdout)
    return {"source_id": source["id"], **key}


def test_every_acknowledged_log_survives_sigkill(cli: Cli) -> None:
    key = _legacy_source(cli)
    server = start_server(cli)
    auth = httpx.post(f"{server.base_url}/auth/authenticate", json={"apiKey": key["api_key"], "secret": key["secret"]})
    assert auth.status_code == 200
    headers = {"Authorization": f"Bearer {auth.json()['accessToken']}", "Content-Type": "application/json"}

    with httpx.Client(base_url=server.base_url, headers=headers, timeout=10) as client:

        def send(_: int) -> str | None:
            response = client.post("/endpoint", content=BODY)
            return str(response.json()["Meta"]["Logs"][0]["ID"]) if response.status_code == 202 else None

        with ThreadPoolExecutor(16) as pool:
            acknowledged = [log_id for log_id in pool.map(send, range(200)) if log_id]
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(10)
    assert len(acknowledged) == 200

    restarted = start_server(cli)
    try:
        listed = json.loads(cli.run("logs", "list", "--limit", "500", "--json").stdout)["logs"]
        assert set(acknowledged) <= {log["id"] for log in listed}
        shown = json.loads(cli.run("logs", "show", acknowledged[0], "--json").stdout)
        assert shown["payload"].encode() == BODY and shown["transport"] == "http"
        assert shown["source_id"] == key["source_id"] and shown["size"] == len(BODY)
    finally:
        assert restarted.stop() == 0
