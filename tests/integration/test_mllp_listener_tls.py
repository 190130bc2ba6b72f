"""The MLLP listener over TLS (HEALTHWAY_MLLP_TLS_CERT/_KEY, HEALTHWAY_MLLP_TLS_CLIENT_CA), on SQLite and
PostgreSQL, against Python ``ssl`` clients. The certificates come from the PKI helpers of ``test_mllp_tls``."""

from __future__ import annotations

import hashlib
import ipaddress
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from healthway.delivery.senders import Target
from healthway.domain.delivery_states import AttemptOutcome
from healthway.storage.db import Database
from tests.integration.test_mllp_listener import (
    ADT_A01,
    Node,
    deliver,
    exchange,
    framed,
    msa,
    serving,
    until_closed,
)
from tests.integration.test_mllp_tls import issue, make_ca


@dataclass(frozen=True)
class Pki:
    directory: Path

    def path(self, name: str) -> Path:
        return self.directory / name

    def fingerprint(self, name: str) -> str:
        """SHA-256 of the DER certificate ``name.pem``, as ``--client-cert-sha256`` takes it."""
        cert = x509.load_pem_x509_certificate(self.path(f"{name}.pem").read_bytes())
        return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()

    def client_context(self, *, trust: str = "ca.pem", cert: str | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.path(trust))
        if cert is not None:
            context.load_cert_chain(self.path(f"{cert}.pem"), self.path(f"{cert}.key"))
        return context


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """``ca.pem`` with ``server`` (127.0.0.1), ``client`` and ``other-client``; ``stranger-ca.pem`` with
    ``stranger-client``: a client certificate from a CA the listener does not know."""
    directory = tmp_path_factory.mktemp("mllp-pki")
    ca, stranger = make_ca("Listener Test CA"), make_ca("Unknown CA")
    for issuer, name in ((ca, "ca.pem"), (stranger, "stranger-ca.pem")):
        (directory / name).write_bytes(issuer.cert.public_bytes(serialization.Encoding.PEM))
    issue(ca, directory, "server", sans=[x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    issue(ca, directory, "client", sans=[], client=True)
    issue(ca, directory, "other-client", sans=[], client=True)
    issue(stranger, directory, "stranger-client", sans=[], client=True)
    return Pki(directory)


def tls_settings(pki: Pki, *, client_ca: bool = False) -> dict[str, Any]:
    return {
        "mllp_tls_cert": pki.path("server.pem"),
        "mllp_tls_key": pki.path("server.key"),
        "mllp_tls_client_ca": pki.path("ca.pem") if client_ca else None,
    }


def tls_connect(node: Node, context: ssl.SSLContext) -> ssl.SSLSocket:
    """A TLS connection to the listener, verifying its certificate for 127.0.0.1 (the handshake done)."""
    return context.wrap_socket(node.connect(), server_hostname="127.0.0.1")


def assert_refused(node: Node, context: ssl.SSLContext) -> None:
    """The handshake fails, or the connection is closed before any ACK: either way no message is answered."""
    try:
        with tls_connect(node, context) as sock:
            sock.sendall(framed(ADT_A01))
            received = until_closed(sock)
    except (ssl.SSLError, ConnectionError):
        return  # refused during the handshake (TLS 1.3 clients learn of it on their first read)
    assert received == b""


@pytest.fixture
def tls_node(db: Database, pki: Pki) -> Iterator[Node]:
    with serving(db, **tls_settings(pki)) as node:
        yield node


def test_a_client_trusting_the_ca_gets_aa_over_tls(tls_node: Node, pki: Pki) -> None:
    with tls_connect(tls_node, pki.client_context()) as sock:
        assert sock.version() in ("TLSv1.2", "TLSv1.3")
        [ack] = exchange(sock, ADT_A01)
    assert msa(ack) == ("AA", "HWS-A01-0001")
    [log] = tls_node.logs("HWS-A01-0001")
    assert (log.transport, log.payload) == ("mllp", ADT_A01)


def test_tls_1_2_without_an_aead_cipher_suite_is_refused(tls_node: Node, pki: Pki) -> None:
    cbc = pki.client_context()
    cbc.maximum_version = ssl.TLSVersion.TLSv1_2
    cbc.set_ciphers("ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA384:ECDHE-ECDSA-AES128-SHA")
    with pytest.raises(ssl.SSLError):
        tls_connect(tls_node, cbc).close()
    aead = pki.client_context()
    aead.maximum_version = ssl.TLSVersion.TLSv1_2
    with tls_connect(tls_node, aead) as sock:  # the same client with its default (AEAD) suites is served
        assert sock.version() == "TLSv1.2"
        assert msa(exchange(sock, ADT_A01)[0]) == ("AA", "HWS-A01-0001")


def test_a_client_that_does_not_trust_the_server_s_ca_fails_the_handshake(tls_node: Node, pki: Pki) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        tls_connect(tls_node, pki.client_context(trust="stranger-ca.pem")).close()
    assert tls_node.logs() == []


def test_a_plain_connection_to_the_tls_port_gets_no_ack_and_is_closed(tls_node: Node, pki: Pki) -> None:
    with tls_node.connect() as plain:
        plain.sendall(framed(ADT_A01))
        received = until_closed(plain)
    assert b"\x0b" not in received and b"MSA" not in received  # at most a TLS alert, never an ACK
    assert tls_node.logs() == []
    with tls_connect(tls_node, pki.client_context()) as sock:  # the listener goes on serving TLS clients
        assert msa(exchange(sock, ADT_A01)[0]) == ("AA", "HWS-A01-0001")


def test_a_peer_requiring_a_client_certificate_admits_only_that_certificate(db: Database, pki: Pki) -> None:
    settings = tls_settings(pki, client_ca=True)
    with serving(db, client_cert_sha256=pki.fingerprint("client"), **settings) as node:
        with tls_connect(node, pki.client_context(cert="client")) as sock:
            assert msa(exchange(sock, ADT_A01)[0]) == ("AA", "HWS-A01-0001")
        assert_refused(node, pki.client_context(cert="other-client"))  # same CA, another fingerprint
        assert_refused(node, pki.client_context(cert="stranger-client"))  # a CA the listener does not know
        assert_refused(node, pki.client_context())  # no client certificate at all
        assert [log.control_id for log in node.logs()] == ["HWS-A01-0001"]
        # Only the wrong fingerprint got past the handshake to the peer check; the others failed in it.
        assert node.metric("healthway_mllp_refused_connections_total") == 1


def test_with_a_client_ca_any_certificate_it_signed_is_admitted_by_a_peer_without_fingerprint(
    db: Database, pki: Pki
) -> None:
    with serving(db, **tls_settings(pki, client_ca=True)) as node:
        for name in ("client", "other-client"):
            with tls_connect(node, pki.client_context(cert=name)) as sock:
                assert msa(exchange(sock, ADT_A01)[0]) == ("AA", "HWS-A01-0001")
        assert_refused(node, pki.client_context())
        assert len(node.logs("HWS-A01-0001")) == 1


def test_gateway_to_gateway_over_mutual_tls(db: Database, pki: Pki) -> None:
    """A Healthway MLLP destination with TLS material (by value, as the CLI stores it) delivers to this listener,
    which requires that destination's client certificate."""
    files = {"ca_pem": "ca.pem", "cert_pem": "client.pem", "key_pem": "client.key"}
    pem = {key: pki.path(name).read_text() for key, name in files.items()}
    with serving(db, client_cert_sha256=pki.fingerprint("client"), **tls_settings(pki, client_ca=True)) as node:
        target = Target("other-healthway", "mllp", {"host": "127.0.0.1", "port": node.port, "tls": True} | pem)
        [result] = deliver(target, ADT_A01)
        assert (result.outcome, result.response_code) == (AttemptOutcome.DELIVERED, "AA")
        assert [log.control_id for log in node.logs()] == ["HWS-A01-0001"]
