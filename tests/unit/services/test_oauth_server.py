"""``claimed_client``: the key failed client authentications are counted under, from the domain's parser."""

from __future__ import annotations

from healthway.services.oauth_server import claimed_client
from healthway.testing import make_key_pair


def test_client_id_wins_over_the_assertion() -> None:
    assertion = make_key_pair().sign({"iss": "from-the-assertion"})
    assert claimed_client({"client_id": "named", "client_assertion": assertion}) == "named"


def test_the_unverified_issuer_of_the_assertion_cut_to_64_characters() -> None:
    assert claimed_client({"client_assertion": make_key_pair().sign({"iss": "a-client"})}) == "a-client"
    assert claimed_client({"client_assertion": make_key_pair().sign({"iss": "x" * 100})}) == "x" * 64
    assert claimed_client({"client_id": "y" * 100}) == "y" * 64


def test_unknown_when_nothing_can_be_read() -> None:
    for form in (
        {},
        {"client_assertion": "not.a-jwt"},
        {"client_assertion": "a.b.c"},
        {"client_assertion": make_key_pair().sign({"sub": "no iss"})},
        {"client_assertion": make_key_pair().sign({"iss": 7})},
    ):
        assert claimed_client(form) == "unknown", form
