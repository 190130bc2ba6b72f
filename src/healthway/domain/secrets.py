"""Secrets that say what they are: a fixed prefix, then ≥256 random bits, stored only as a SHA-256 digest.

The prefixes let leak scanners (and our own log scrubber) find them.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from enum import StrEnum


class SecretKind(StrEnum):
    LEGACY_SECRET = "hwsk_"
    ACCESS_TOKEN = "hwat_"
    REFRESH_TOKEN = "hwrt_"
    PERSONAL_ACCESS_TOKEN = "hwpat_"


# Anything that looks like one of our secrets, for scrubbing logs.
SECRET_PATTERN = re.compile(r"hw(?:sk|at|rt|pat)_[A-Za-z0-9_\-]+")


def new_secret(kind: SecretKind) -> str:
    return kind.value + secrets.token_urlsafe(32)  # 32 bytes = 256 bits


def digest(secret: str) -> str:
    """SHA-256 is right for high-entropy random secrets (argon2 is for human passwords)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def has_kind(secret: str, kind: SecretKind) -> bool:
    prefix, _, rest = secret.partition("_")
    return f"{prefix}_" == kind.value and bool(rest)


def same_digest(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def generate_password(length: int = 24) -> str:
    """A generated password for a new user: ≥20 random characters from an unambiguous alphabet."""
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"
    return "".join(secrets.choice(alphabet) for _ in range(length))
