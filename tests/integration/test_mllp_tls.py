"""MLLP destinations over TLS against a real python-hl7 MLLP peer on loopback with an ``ssl.SSLContext``.

A throwaway PKI is made per module: a CA, a server certificate for 127.0.0.1 and localhost, one for example.org
only, one from a CA the sender does not know, and a client certificate.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hl7
import hl7.mllp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from healthway.delivery.senders import Message, Target
from healthway.delivery.senders import mllp as mllp_module
from healthway.delivery.senders.mllp import MllpSender
from healthway.domain.delivery_states import AttemptOutcome
from healthway.domain.retry import AttemptResult
from healthway.errors import InvalidRequest
from healthway.services.destinations import _mllp as validate_mllp
from healthway.testing import LOOPBACK_POLICY, loopback_guard

ADT = "MSH|^~\\&|EHR|HOSP|GW|HOSP|202601010000||ADT^A01|{id}|P|2.5\rPID|1||42^^^HOSP||DOE^JANE\r"
NOW = datetime.datetime.now(datetime.UTC)


def hl7_message(control_id: str) -> Message:
    payload = ADT.format(id=control_id).encode()
    return Message("delivery-1", "log-1", "source-1", "x-application/hl7-v2+er7", payload, control_id)


# -- a throwaway PKI -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Issuer:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate


def _builder(subject: str, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(minutes=5))
        .not_valid_after(NOW + datetime.timedelta(days=1))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def make_ca(name: str) -> Issuer:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)  # keyCertSign, cRLSign
    cert = (
        _builder(name, subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .sign(key, hashes.SHA256())
    )
    return Issuer(key, cert)


def issue(ca: Issuer, directory: Path, name: str, *, sans: list[x509.GeneralName], client: bool = False) -> None:
    """Writes ``name.pem`` (certificate) and ``name.key`` (unencrypted PKCS#8 key) into ``directory``."""
    key = ec.generate_private_key(ec.SECP256R1())
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    builder = (
        _builder(name, ca.cert.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca.key, hashes.SHA256())
    (directory / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (directory / f"{name}.key").write_bytes(key_pem)


def write_pki(directory: Path) -> Path:
    """``ca.pem``; ``server``, ``elsewhere`` (example.org only), ``stranger`` (unknown CA) and ``client`` as
    ``NAME.pem`` + ``NAME.key``."""
    ca, stranger = make_ca("Test CA"), make_ca("Unknown CA")
    (directory / "ca.pem").write_bytes(ca.cert.public_bytes(serialization.Encoding.PEM))
    loopback = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    issue(ca, directory, "server", sans=loopback)
    issue(ca, directory, "elsewhere", sans=[x509.DNSName("example.org")])
    issue(stranger, directory, "stranger", sans=loopback)
    issue(ca, directory, "client", sans=[], client=True)
    return directory


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_pki(tmp_path_factory.mktemp("pki"))


# -- a TLS MLLP peer -------------------------------------------------------------------------------------------


@dataclass
class Peer:
    port: int
    received: list[str]  # MSH-10 of each message
    client_names: list[str | None]  # the client certificate's CN per message, None when none was presented


def _client_name(writer: asyncio.StreamWriter) -> str | None:
    cert = writer.get_extra_info("peercert")
    names = [value for rdn in (cert or {}).get("subject", ()) for key, value in rdn if key == "commonName"]
    return names[0] if names else None


@asynccontextmanager
async def tls_peer(pki: Path, cert: str = "server", *, require_client_cert: bool = False) -> AsyncIterator[Peer]:
    """A python-hl7 MLLP server behind TLS, answering each message with an AA ACK for its MSH-10."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki / f"{cert}.pem", pki / f"{cert}.key")
    if require_client_cert:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(pki / "ca.pem")
    peer = Peer(0, [], [])
    writers: list[asyncio.StreamWriter] = []

    async def handle(reader: hl7.mllp.HL7StreamReader, writer: hl7.mllp.HL7StreamWriter) -> None:
        writers.append(writer)
        try:
            while not reader.at_eof():
                message = await reader.readmessage()
                peer.received.append(str(message.segment("MSH")[10]))
                peer.client_names.append(_client_name(writer))
                writer.writemessage(message.create_ack("AA", message_id=f"ACK-{len(peer.received)}"))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await hl7.mllp.start_hl7_server(handle, "127.0.0.1", 0, ssl=context)
    peer.port = server.sockets[0].getsockname()[1]
    try:
        yield peer
    finally:
        server.close()
        for writer in writers:
            writer.close()
        await server.wait_closed()


def tls_target(port: int, host: str = "127.0.0.1", target_id: str = "m", **files: Path) -> Target:
    """``ca_pem=path`` etc.: the destination holds the files' PEM text (by value), as the CLI sends it."""
    config: dict[str, Any] = {"host": host, "port": port, "tls": True} | {k: v.read_text() for k, v in files.items()}
    return Target(target_id, "mllp", config)


async def send_all(target: Target, *messages: Message) -> list[AttemptResult]:
    sender = MllpSender(guard=loopback_guard(), timeout=5)
    try:
        return [await sender.send(target, message) for message in messages]
    finally:
        await sender.aclose()


# -- tests -----------------------------------------------------------------------------------------------------


def test_delivers_over_tls_verifying_the_server_against_the_ca(pki: Path) -> None:
    async def go() -> tuple[list[AttemptResult], Peer]:
        async with tls_peer(pki) as peer:
            target = tls_target(peer.port, ca_pem=pki / "ca.pem")
            return await send_all(target, hl7_message("T1"), hl7_message("T2")), peer

    results, peer = asyncio.run(go())
    assert [(r.outcome, r.response_code) for r in results] == [(AttemptOutcome.DELIVERED, "AA")] * 2
    assert peer.received == ["T1", "T2"] and peer.client_names == [None, None]


def test_localhost_by_name_is_verified_too(pki: Path) -> None:
    async def go() -> list[AttemptResult]:
        async with tls_peer(pki) as peer:
            return await send_all(tls_target(peer.port, host="localhost", ca_pem=pki / "ca.pem"), hl7_message("L1"))

    assert [r.outcome for r in asyncio.run(go())] == [AttemptOutcome.DELIVERED]


def test_mutual_tls_presents_the_client_certificate_and_loads_the_context_once(
    pki: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads: list[tuple[str | None, ...]] = []
    real_load = mllp_module.load_tls_context

    def counting_load(*files: str | None) -> ssl.SSLContext:
        loads.append(files)
        return real_load(*files)

    monkeypatch.setattr(mllp_module, "load_tls_context", counting_load)
    files = {"ca_pem": pki / "ca.pem", "cert_pem": pki / "client.pem", "key_pem": pki / "client.key"}

    async def go() -> tuple[list[AttemptResult], Peer]:
        async with tls_peer(pki, require_client_cert=True) as peer:
            sender = MllpSender(guard=loopback_guard(), timeout=5)
            try:
                # Two destinations with the same files: two connections, one SSL context.
                first = await sender.send(tls_target(peer.port, "127.0.0.1", "a", **files), hl7_message("M1"))
                second = await sender.send(tls_target(peer.port, "127.0.0.1", "b", **files), hl7_message("M2"))
                assert len(sender._connections) == 2
            finally:
                await sender.aclose()
            return [first, second], peer

    results, peer = asyncio.run(go())
    assert [r.outcome for r in results] == [AttemptOutcome.DELIVERED] * 2
    assert peer.received == ["M1", "M2"] and peer.client_names == ["client", "client"]
    assert len(loads) == 1


def test_a_missing_client_certificate_is_a_retry_with_a_tls_detail(pki: Path) -> None:
    async def go() -> tuple[list[AttemptResult], Peer]:
        async with tls_peer(pki, require_client_cert=True) as peer:
            return await send_all(tls_target(peer.port, ca_pem=pki / "ca.pem"), hl7_message("X1")), peer

    (result,), peer = asyncio.run(go())
    assert result.outcome is AttemptOutcome.FAILED and result.response_code is None
    assert result.detail.startswith("TLS "), result.detail
    assert "certificate" in result.detail and "Traceback" not in result.detail
    assert peer.received == []


def test_a_server_certificate_from_an_unknown_ca_is_a_retry(pki: Path) -> None:
    async def go() -> tuple[list[AttemptResult], Peer]:
        async with tls_peer(pki, "stranger") as peer:
            return await send_all(tls_target(peer.port, ca_pem=pki / "ca.pem"), hl7_message("U1")), peer

    (result,), peer = asyncio.run(go())
    assert result.outcome is AttemptOutcome.FAILED
    assert result.detail.startswith("TLS handshake failed: certificate verify failed"), result.detail
    assert peer.received == []


def test_the_system_store_does_not_trust_a_private_ca(pki: Path) -> None:
    async def go() -> list[AttemptResult]:
        async with tls_peer(pki) as peer:
            return await send_all(tls_target(peer.port), hl7_message("S1"))  # no ca_pem: the system CAs

    (result,) = asyncio.run(go())
    assert result.outcome is AttemptOutcome.FAILED and "certificate verify failed" in result.detail


def test_a_certificate_for_another_host_name_is_a_retry(pki: Path) -> None:
    async def go() -> list[AttemptResult]:
        async with tls_peer(pki, "elsewhere") as peer:
            return await send_all(tls_target(peer.port, ca_pem=pki / "ca.pem"), hl7_message("H1"))

    (result,) = asyncio.run(go())
    assert result.outcome is AttemptOutcome.FAILED
    assert result.detail.startswith("TLS handshake failed: certificate verify failed"), result.detail
    assert "127.0.0.1" in result.detail  # OpenSSL says which name did not match


def test_unusable_tls_material_and_old_file_paths_are_a_retry_not_a_crash(pki: Path) -> None:
    async def go() -> list[AttemptResult]:
        async with tls_peer(pki) as peer:
            wrong = tls_target(peer.port, ca_pem=pki / "client.key")  # a key where the CA should be
            legacy = Target("old", "mllp", {"host": "127.0.0.1", "port": peer.port, "tls": True, "ca_file": "/x"})
            sender = MllpSender(guard=loopback_guard(), timeout=5)
            try:
                results = [await sender.send(wrong, hl7_message("F1")), await sender.send(legacy, hl7_message("F2"))]
                good = tls_target(peer.port, ca_pem=pki / "ca.pem")
                return [*results, await sender.send(good, hl7_message("F3"))]  # the sender still works
            finally:
                await sender.aclose()

    wrong, legacy, good = asyncio.run(go())
    assert (wrong.outcome, wrong.detail) == (
        AttemptOutcome.FAILED,
        "TLS setup failed: ca_pem holds no PEM CA certificate",
    )
    assert legacy.outcome is AttemptOutcome.FAILED and "no longer read" in legacy.detail
    assert "PRIVATE KEY" not in wrong.detail + legacy.detail
    assert good.outcome is AttemptOutcome.DELIVERED


# -- the destination's config, as the CLI and the Platform API check it ----------------------------------------


PEM = {"ca_pem": "ca.pem", "cert_pem": "client.pem", "key_pem": "client.key"}


def test_config_stores_the_pem_text(pki: Path) -> None:
    config = {"host": "lab", "port": 6661, "tls": True} | {k: (pki / v).read_text() for k, v in PEM.items()}
    stored = validate_mllp(config, LOOPBACK_POLICY)
    assert stored["ca_pem"] == (pki / "ca.pem").read_text() and stored["key_pem"] == (pki / "client.key").read_text()
    assert validate_mllp({"host": "lab", "port": 6661}, LOOPBACK_POLICY)["tls"] is False


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"tls": "yes"}, "tls must be true or false"),
        ({"ca_pem": "ca.pem"}, "set tls to true"),
        ({"tls": True, "cert_pem": "client.pem"}, "needs both cert_pem and key_pem"),
        ({"tls": True, "key_pem": "client.key"}, "needs both cert_pem and key_pem"),
        ({"tls": True, "ca_pem": "client.key"}, "ca_pem holds no PEM CA certificate"),
        ({"tls": True, "cert_pem": "client.key", "key_pem": "client.key"}, "PEM certificate and its matching"),
        ({"tls": True, "cert_pem": "client.pem", "key_pem": "server.key"}, "PEM certificate and its matching"),
    ],
)
def test_config_refuses_bad_tls_material(pki: Path, config: dict[str, Any], message: str) -> None:
    config = {k: (pki / v).read_text() if k.endswith("_pem") else v for k, v in config.items()}
    with pytest.raises(InvalidRequest, match=message) as raised:
        validate_mllp({"host": "lab", "port": 6661} | config, LOOPBACK_POLICY)
    assert "BEGIN" not in raised.value.message  # never the PEM text


@pytest.mark.parametrize("field", ["ca_file", "cert_file", "key_file"])
def test_config_refuses_file_paths_without_looking_at_them(pki: Path, field: str) -> None:
    for path in (str(pki / "ca.pem"), str(pki / "nope.pem")):  # an existing file and a missing one: the same answer
        with pytest.raises(InvalidRequest) as raised:
            validate_mllp({"host": "lab", "port": 6661, "tls": True, field: path}, LOOPBACK_POLICY)
        assert raised.value.message == (
            "TLS material is given by value (ca_pem, cert_pem, key_pem as PEM text), not as paths"
        )
