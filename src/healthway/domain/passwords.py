"""Human passwords: argon2id, at least 12 characters, not a common password, no composition rules (NIST 800-63B)."""

from __future__ import annotations

from functools import cache, cached_property
from importlib import resources

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from healthway.errors import InvalidRequest

MIN_LENGTH = 12
MAX_LENGTH = 1024  # argon2 hashes anything, but an unbounded input is a denial-of-service lever


@cache
def _common_passwords() -> frozenset[str]:
    # The shipped list holds only passwords of 12+ characters (shorter ones fail the length rule anyway): the
    # long entries of Royce Williams' 20,000 most common passwords (the list Django ships), plus our own.
    text = resources.files("healthway.domain").joinpath("common_passwords.txt").read_text()
    return frozenset(line.strip().lower() for line in text.splitlines() if line.strip())


def check_policy(password: str) -> None:
    if len(password) < MIN_LENGTH:
        raise InvalidRequest(f"password must be at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise InvalidRequest(f"password must be at most {MAX_LENGTH} characters")
    if password.lower() in _common_passwords():
        raise InvalidRequest("password is too common; choose another")


class Passwords:
    """Hashes and verifies human passwords with argon2id; one instance per application (``app.build``).

    ``hasher`` defaults to argon2-cffi's recommended parameters; tests pass cheap ones (``testing.CHEAP_PASSWORDS``).
    A hash carries its own parameters, so it verifies with any instance; ``verify`` offers a new hash when the
    stored one was made with parameters other than this instance's.
    """

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self._hasher = hasher or PasswordHasher()

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, password_hash: str, password: str) -> tuple[bool, str | None]:
        """(matches, new hash when the stored one uses other parameters)."""
        try:
            self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False, None
        return True, self.hash(password) if self._hasher.check_needs_rehash(password_hash) else None

    @cached_property
    def dummy_hash(self) -> str:
        """A hash of no one's password, verified against for unknown accounts so that they cost the same work."""
        return self.hash("not a password anyone has: timing equalizer")
