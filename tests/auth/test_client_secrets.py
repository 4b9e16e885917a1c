"""Client secrets are stored as salted scrypt hashes and checked in constant time."""

from __future__ import annotations

from fhir_server.auth.client_secrets import hash_secret, new_secret, verify_secret


def test_a_secret_matches_its_hash_and_nothing_else():
    secret = new_secret()
    stored = hash_secret(secret)
    assert secret not in stored and stored.startswith("scrypt$16384$8$1$")
    assert verify_secret(secret, stored)
    assert not verify_secret(secret[:-1], stored)
    assert not verify_secret(secret + "x", stored)


def test_the_same_secret_hashes_differently_each_time():
    assert hash_secret("same") != hash_secret("same")


def test_no_stored_hash_or_an_unknown_scheme_never_matches():
    assert not verify_secret("anything", None)
    assert not verify_secret("anything", "md5$1$1$1$c2FsdA$aGFzaA")
