"""Routing and delivery through real processes: the CLI, ``healthway serve`` (one or two nodes) and a real
webhook receiver on loopback."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from pytest_httpserver import HTTPServer
from standardwebhooks import Webhook

from tests.e2e.conftest import Cli, Server, free_port, start_server


@contextmanager
def receiver(port: int = 0) -> Iterator[HTTPServer]:
    """A webhook receiver answering 200 to everything, recording what it got."""
    server = HTTPServer(host="127.0.0.1", port=port, threaded=True)
    server.expect_request("/hook", method="POST").respond_with_data("ok")
    server.start()
    try:
        yield server
    finally:
        server.clear()
        server.stop()


def setup(cli: Cli, hook_url: str, **env: Any) -> dict[str, Any]:
    """init, a source with a legacy key, a webhook destination and a FIFO subscription, all through the CLI."""
    cli.invoke("init", "--admin-email", "admin@example.org", "--if-needed", **env)
    source = json.loads(cli.invoke("source", "create", "--env", "development", "--name", "EHR", "--json", **env).stdout)
    key = json.loads(cli.invoke("key", "create-legacy", "--source", source["id"], "--json", **env).stdout)
    created = cli.invoke(
        "destination", "create", "--env", "development", "--name", "Hook", "--kind", "webhook",
        "--url", hook_url, "--verification-token", "vt-1", "--json", **env,
    )  # fmt: skip
    destination = json.loads(created.stdout)
    subscription = json.loads(
        cli.invoke(
            "subscription", "create", "--source", source["id"], "--destination", destination["id"], "--json", **env
        ).stdout
    )
    return {"source": source, "key": key, "destination": destination, "subscription": subscription}


def client_for(server: Server, key: dict[str, str]) -> httpx.Client:
    auth = httpx.post(f"{server.base_url}/auth/authenticate", json={"apiKey": key["api_key"], "secret": key["secret"]})
    assert auth.status_code == 200, auth.text
    headers = {"Authorization": f"Bearer {auth.json()['accessToken']}", "Content-Type": "application/json"}
    return httpx.Client(base_url=server.base_url, headers=headers, timeout=10)


def body(n: int) -> bytes:
    return json.dumps({"Meta": {"DataModel": "PatientAdmin", "EventType": "Arrival"}, "n": n}).encode()


def send(client: httpx.Client, n: int) -> str:
    response = client.post("/endpoint", content=body(n))
    assert response.status_code == 202, response.text
    return str(response.json()["Meta"]["Logs"][0]["ID"])


def received_numbers(hook: HTTPServer) -> list[int]:
    return [json.loads(request.data)["n"] for request, _ in list(hook.log)]


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def test_send_is_delivered_signed_then_replayed(cli: Cli) -> None:
    with receiver() as hook:
        world = setup(cli, hook.url_for("/hook"))
        destination = world["destination"]
        assert set(destination) >= {"id", "name", "kind", "signing_secret"}
        assert destination["kind"] == "webhook" and destination["signing_secret"].startswith("whsec_")
        assert world["subscription"]["ordering"] == "fifo"
        listed = json.loads(cli.invoke("destination", "list", "--env", "development", "--json").stdout)
        assert destination["signing_secret"] not in json.dumps(listed) and "vt-1" not in json.dumps(listed)
        assert listed["destinations"][0]["config"]["has_signing_secret"] is True

        metrics_port = free_port()
        server = start_server(cli, HEALTHWAY_METRICS_ADDRESS=f"127.0.0.1:{metrics_port}")
        try:
            with client_for(server, world["key"]) as client:
                started = time.monotonic()
                log_id = send(client, 1)
                wait_for(lambda: len(hook.log) == 1, 5, "the webhook delivery")
                latency = time.monotonic() - started
            request, _ = hook.log[0]
            assert request.headers["Healthway-Log-Id"] == log_id
            assert request.headers["Healthway-Source-Id"] == world["source"]["id"]
            assert request.headers["verification-token"] == "vt-1"
            Webhook(destination["signing_secret"]).verify(request.data, dict(request.headers))
            assert latency < 1.0  # woken by intake, not by the poll

            def delivered() -> bool:
                shown = json.loads(cli.invoke("logs", "show", log_id, "--json").stdout)
                return bool(shown["status"] == "delivered")

            wait_for(delivered, 5, "the log to be marked delivered")
            replayed = json.loads(cli.invoke("logs", "replay", log_id, "--json").stdout)
            assert replayed["log_id"] == log_id and len(replayed["deliveries"]) == 1
            assert replayed["deliveries"][0]["destination_id"] == destination["id"]
            wait_for(lambda: len(hook.log) == 2, 5, "the replayed delivery")
            assert hook.log[1][0].data == hook.log[0][0].data
            shown = json.loads(cli.invoke("logs", "show", log_id, "--json").stdout)
            assert [d["status"] for d in shown["deliveries"]] == ["delivered", "delivered"]
            assert shown["deliveries"][0]["attempts"][0]["number"] == 1
            metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
            assert 'healthway_delivery_attempts_total{kind="webhook",outcome="delivered"}' in metrics
            assert destination["id"] not in metrics  # no tenant identifier in labels
        finally:
            assert server.stop() == 0


def test_sigkill_with_200_pending_deliveries_loses_none_and_keeps_order(cli: Cli) -> None:
    port = free_port()
    world = setup(cli, f"http://127.0.0.1:{port}/hook")  # nobody listens there yet
    server = start_server(cli)
    with client_for(server, world["key"]) as client:
        for n in range(200):
            send(client, n)
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(10)
    pending = json.loads(cli.invoke("logs", "list", "--status", "received", "--limit", "500", "--json").stdout)
    assert len(pending["logs"]) == 200

    with receiver(port) as hook:
        restarted = start_server(cli)
        try:
            wait_for(lambda: len(hook.log) >= 200, 40, "200 deliveries after the restart")
            numbers = received_numbers(hook)
            assert numbers == list(range(200))  # in order, none lost, none twice (nothing had been delivered)
        finally:
            assert restarted.stop() == 0
    delivered = json.loads(cli.invoke("logs", "list", "--status", "delivered", "--limit", "500", "--json").stdout)
    assert len(delivered["logs"]) == 200


@pytest.mark.postgres
def test_two_nodes_on_postgresql_deliver_one_fifo_subscription_in_order(cli: Cli, postgres_url: str) -> None:
    pg = {"HEALTHWAY_DATABASE_URL": postgres_url}
    with receiver() as hook:
        world = setup(cli, hook.url_for("/hook"), **pg)
        nodes = [
            start_server(
                cli,
                **pg,
                HEALTHWAY_HTTP_PORT=str(free_port()),
                HEALTHWAY_MLLP_PORT=str(free_port()),
                HEALTHWAY_SFTP_PORT=str(free_port()),
            )
            for _ in range(2)
        ]
        try:
            clients = [client_for(node, world["key"]) for node in nodes]
            try:
                for n in range(200):
                    send(clients[n % 2], n)  # both nodes take intake; both run delivery workers
            finally:
                for client in clients:
                    client.close()
            wait_for(lambda: len(hook.log) >= 200, 60, "200 deliveries")
            time.sleep(0.5)  # anything sent twice would show up now
            assert received_numbers(hook) == list(range(200))
        finally:
            for node in nodes:
                assert node.stop() == 0


def test_cli_switches_a_subscription_off_and_on(cli: Cli) -> None:
    world = setup(cli, "http://127.0.0.1:9/hook")
    subscription_id = world["subscription"]["id"]
    off = json.loads(cli.invoke("subscription", "set", subscription_id, "--disabled", "--json").stdout)
    assert off["enabled"] is False and off["id"] == subscription_id
    listed = json.loads(cli.invoke("subscription", "list", "--env", "development", "--json").stdout)
    assert [s["enabled"] for s in listed["subscriptions"]] == [False]
    assert json.loads(cli.invoke("subscription", "set", subscription_id, "--enabled", "--json").stdout)["enabled"]
    missing = cli.invoke("subscription", "set", "nope", "--enabled", check=False)
    assert missing.returncode == 1 and "not found" in missing.stderr


def test_cli_pauses_and_resumes_a_destination(cli: Cli) -> None:
    destination = setup(cli, "http://127.0.0.1:9/hook")["destination"]
    destination_id = destination["id"]
    paused = json.loads(cli.invoke("destination", "set", destination_id, "--disabled", "--json").stdout)
    assert paused["enabled"] is False and destination["signing_secret"] not in json.dumps(paused)
    assert json.loads(cli.invoke("destination", "set", destination_id, "--enabled", "--json").stdout)["enabled"]
    missing = cli.invoke("destination", "set", "nope", "--disabled", check=False)
    assert missing.returncode == 1 and "not found" in missing.stderr
