"""Password rules (NIST 800-63B: length and a common-password list, no composition rules) and argon2id rehashing."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher

from healthway.domain import passwords
from healthway.errors import InvalidRequest


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


def test_hash_is_argon2id_and_verifies() -> None:
    stored = passwords.hash_password("a long enough passphrase")
    assert stored.startswith("$argon2id$")
    assert passwords.verify_password(stored, "a long enough passphrase") == (True, None)
    assert passwords.verify_password(stored, "a long enough passphrasE") == (False, None)
    assert passwords.verify_password("not a hash", "anything at all") == (False, None)


def test_outdated_parameters_get_a_new_hash_on_verify() -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1).hash("a long enough passphrase")
    matches, new_hash = passwords.verify_password(weak, "a long enough passphrase")
    assert matches and new_hash is not None and new_hash != weak
    assert passwords.verify_password(new_hash, "a long enough passphrase") == (True, None)
    assert passwords.verify_password(weak, "wrong passphrase here") == (False, None)  # no rehash when wrong
