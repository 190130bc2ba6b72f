"""TLS material given by value: an MLLP destination's CA, client certificate and key as PEM text.

The server never opens a path its caller names (issue 14: a path to the SQLite database made the server open and
close it, which drops SQLite's POSIX locks for the whole process). The text is checked here when a destination is
created, stored in its config (the key like the other destination secrets), and turned into an ``ssl.SSLContext``
by the MLLP sender.

The CA goes to OpenSSL from memory (``cadata``). The standard ``ssl`` module loads a certificate chain only from a
path, so the client certificate and key are written to an anonymous in-memory file (``memfd``, Linux) and loaded
through ``/proc/self/fd``; where there is no memfd, to a file in a fresh private (0700) temporary directory that
is removed at once. Either way the file is ours, created for this load: never a path anyone named.
"""

from __future__ import annotations

import hashlib
import os
import ssl
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from healthway.errors import ConfigurationError

MAX_PEM = 100_000  # characters: a chain of a few certificates, or a key
_BEGIN = "-----BEGIN "


class TlsMaterialError(Exception):
    """The PEM text cannot be used (the message names the field, never its content)."""


def looks_like_pem(text: str) -> bool:
    return _BEGIN in text and len(text) <= MAX_PEM


def tls_context(ca_pem: str | None, cert_pem: str | None, key_pem: str | None) -> ssl.SSLContext:
    """Verify the server (chain and host name) against ``ca_pem`` or the system CAs; present ``cert_pem`` +
    ``key_pem`` as the client certificate when given. Raises TlsMaterialError."""
    if ca_pem is not None and not looks_like_pem(ca_pem):
        raise TlsMaterialError("ca_pem holds no PEM CA certificate")
    try:
        context = ssl.create_default_context(cadata=ca_pem) if ca_pem else ssl.create_default_context()
    except (ssl.SSLError, ValueError):
        raise TlsMaterialError("ca_pem holds no PEM CA certificate") from None
    if cert_pem or key_pem:
        _load_client_certificate(context, cert_pem or "", key_pem or "")
    return context


def _load_client_certificate(context: ssl.SSLContext, cert_pem: str, key_pem: str) -> None:
    wrong = "cert_pem and key_pem must be a PEM certificate and its matching unencrypted private key"
    if not looks_like_pem(cert_pem) or not looks_like_pem(key_pem):
        raise TlsMaterialError(wrong)
    try:
        with _private_file(cert_pem.encode() + b"\n" + key_pem.encode()) as path:
            # An encrypted key gets an empty password and fails, rather than OpenSSL prompting on the terminal.
            context.load_cert_chain(path, password=lambda: b"")
    except (ssl.SSLError, ValueError, OSError):
        raise TlsMaterialError(wrong) from None


@contextmanager
def _private_file(data: bytes) -> Iterator[str]:
    """A path readable only by this process, holding ``data``, gone when the block ends."""
    if hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd"):
        fd = os.memfd_create("healthway-tls", os.MFD_CLOEXEC)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    with tempfile.TemporaryDirectory(prefix="healthway-tls-") as directory:  # mkdtemp: mode 0700
        path = os.path.join(directory, "chain.pem")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        yield path


# The listener's side: TLS 1.2 and 1.3 only, AEAD suites only (every TLS 1.3 suite is AEAD; these are TLS 1.2's).
AEAD_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL:!eNULL:!SHA1:!SHA256:!SHA384"


def server_context(cert: Path, key: Path, client_ca: Path | None = None) -> ssl.SSLContext:
    """A listener's TLS context from the operator's files (settings, never a request). With ``client_ca`` every
    client must present a certificate signed by it (mutual TLS). Raises ConfigurationError naming the setting."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(AEAD_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigurationError(f"HEALTHWAY_MLLP_TLS_CERT/_KEY cannot be loaded: {exc.strerror or exc}") from None
    if client_ca is not None:
        try:
            context.load_verify_locations(cafile=client_ca)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigurationError(f"HEALTHWAY_MLLP_TLS_CLIENT_CA cannot be loaded: {exc.strerror or exc}") from None
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def peer_fingerprint(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> str | None:
    """The SHA-256 (lower-case hex) of the certificate the peer presented, None without one."""
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    return hashlib.sha256(der).hexdigest() if der else None
