"""Password rules (NIST 800-63B: length and a common-password list, no composition rules) and argon2id rehashing."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher

from healthway.domain import passwords
from healthway.errors import InvalidRequest
from healthway.testing import CHEAP_PASSWORDS


@pytest.mark.parametrize(
    "password",
    ["all lower case words", "907153482610", "ÅÄÖ unicode ok!", "x" * passwords.MAX_LENGTH],
)
def test_long_enough_uncommon_passwords_pass_without_composition_rules(password: str) -> None:
    passwords.check_policy(password)


@pytest.mark.parametrize(
    ("password", "needle"),
    [
        ("", "at least 12"),
        ("elevenchars", "at least 12"),
        ("x" * (passwords.MAX_LENGTH + 1), "at most"),
        ("password1234", "too common"),
        ("PASSWORD1234", "too common"),  # the list is compared case-insensitively
    ],
)
def test_short_long_and_common_passwords_are_refused(password: str, needle: str) -> None:
    with pytest.raises(InvalidRequest, match=needle) as refused:
        passwords.check_policy(password)
    assert password not in refused.value.message or not password  # the message never echoes the password


def test_the_common_list_is_shipped_and_substantial() -> None:
    common = passwords._common_passwords()
    assert len(common) >= 200
    assert all(p == p.lower() for p in common)


REAL = passwords.Passwords()  # argon2-cffi's recommended parameters, as app.build makes it


def test_hash_is_argon2id_with_the_recommended_parameters_and_verifies() -> None:
    stored = REAL.hash("a long enough passphrase")
    assert stored.startswith("$argon2id$") and not PasswordHasher().check_needs_rehash(stored)
    assert REAL.verify(stored, "a long enough passphrase") == (True, None)
    assert REAL.verify(stored, "a long enough passphrasE") == (False, None)
    assert REAL.verify("not a hash", "anything at all") == (False, None)


def test_outdated_parameters_get_a_new_hash_on_verify() -> None:
    weak = CHEAP_PASSWORDS.hash("a long enough passphrase")
    matches, new_hash = REAL.verify(weak, "a long enough passphrase")
    assert matches and new_hash is not None and new_hash != weak
    assert REAL.verify(new_hash, "a long enough passphrase") == (True, None)
    assert REAL.verify(weak, "wrong passphrase here") == (False, None)  # no rehash when wrong


def test_cheap_and_real_hashes_verify_with_either() -> None:
    """Tests hash cheaply; a hash carries its parameters, so the other side verifies it all the same."""
    cheap, real = CHEAP_PASSWORDS.hash("a long enough passphrase"), REAL.hash("a long enough passphrase")
    assert cheap.startswith("$argon2id$v=19$m=8192,t=1,p=1$")
    assert CHEAP_PASSWORDS.verify(cheap, "a long enough passphrase") == (True, None)
    assert CHEAP_PASSWORDS.verify(real, "a long enough passphrase")[0]
    assert not CHEAP_PASSWORDS.verify(real, "another passphrase")[0]


def test_the_dummy_hash_matches_no_password_and_is_made_once() -> None:
    assert CHEAP_PASSWORDS.dummy_hash is CHEAP_PASSWORDS.dummy_hash
    assert CHEAP_PASSWORDS.verify(CHEAP_PASSWORDS.dummy_hash, "") == (False, None)
