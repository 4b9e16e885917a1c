"""An access token works until it expires, is revoked, or its client is revoked; a token
the server did not sign, or signed for another audience, never works."""

from __future__ import annotations

import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from fhir_server.auth import tokens
from fhir_server.auth.clients import ClientRegistry
from fhir_server.storage.engine import Database
from tests.auth.conftest import bearer
from tests.conftest import get_token

SCOPE = "system/Patient.rs"


@pytest.fixture
def registered(app):
    client, secret = app.state.authentication.clients.register(
        "village clinic", "Organization/org-village-1", [SCOPE])
    return client.client_id, secret


def _claims(app, client_id: str, **changes) -> dict:
    now = int(time.time())
    tokens = app.state.authentication.tokens
    return {"iss": tokens.issuer, "aud": tokens.audience, "sub": client_id, "client_id": client_id,
            "iat": now, "exp": now + 60, "jti": "j-" + str(now), "scope": SCOPE, **changes}


def _server_signed(app, claims: dict) -> str:
    key = app.state.authentication.tokens.key
    return jwt.encode(claims, key.private_key, algorithm="ES256", headers={"kid": key.kid})


def test_a_fresh_token_is_accepted(anonymous, registered):
    token = get_token(anonymous, *registered)
    assert anonymous.get("/fhir/Patient", headers=bearer(token)).status_code == 200


def test_an_expired_token_is_refused(anonymous, app, registered):
    token = _server_signed(app, _claims(app, registered[0], iat=int(time.time()) - 120,
                                        exp=int(time.time()) - 1))
    response = anonymous.get("/fhir/Patient", headers=bearer(token))
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert "expired" in response.json()["issue"][0]["diagnostics"]


def test_a_revoked_token_is_refused_and_only_its_client_may_revoke_it(anonymous, app, registered):
    client_id, secret = registered
    token = get_token(anonymous, client_id, secret)
    other, other_secret = app.state.authentication.clients.register("other", "Organization/x", [SCOPE])
    # another client cannot revoke it (RFC 7009 still answers 200)
    response = anonymous.post("/auth/revoke", data={"token": token}, auth=(other.client_id, other_secret))
    assert response.status_code == 200
    assert anonymous.get("/fhir/Patient", headers=bearer(token)).status_code == 200
    # its own client can
    response = anonymous.post("/auth/revoke", data={"token": token}, auth=(client_id, secret))
    assert response.status_code == 200
    refused = anonymous.get("/fhir/Patient", headers=bearer(token))
    assert refused.status_code == 401
    assert "revoked" in refused.json()["issue"][0]["diagnostics"]
    # a new token of the same client still works
    assert anonymous.get("/fhir/Patient", headers=bearer(get_token(anonymous, client_id, secret))).status_code == 200


def test_revoke_needs_client_authentication_and_ignores_unknown_tokens(anonymous, registered):
    assert anonymous.post("/auth/revoke", data={"token": "x"}).status_code == 401
    assert anonymous.post("/auth/revoke", data={"token": "not-a-token"}, auth=registered).status_code == 200


def test_revoking_a_client_elsewhere_refuses_its_tokens_once_the_revocations_reload(
        anonymous, registered, settings, monkeypatch):
    token = get_token(anonymous, *registered)
    assert anonymous.get("/fhir/Patient", headers=bearer(token)).status_code == 200
    # as `clients revoke` does, from another process: a registry of its own on the same database
    assert ClientRegistry(Database(settings.database_url)).revoke(registered[0])
    monkeypatch.setattr(tokens, "REVOCATION_REFRESH_SECONDS", 0.0)  # instead of waiting 2 s
    assert anonymous.get("/fhir/Patient", headers=bearer(token)).status_code == 401


def test_an_expired_token_stays_refused_after_it_was_accepted(anonymous, app, registered, monkeypatch):
    token = _server_signed(app, _claims(app, registered[0], exp=int(time.time()) + 60))
    assert anonymous.get("/fhir/Patient", headers=bearer(token)).status_code == 200
    monkeypatch.setattr(tokens.time, "time", lambda: time.monotonic() + 10**10)  # long after exp
    assert anonymous.get("/fhir/Patient", headers=bearer(token)).status_code == 401


@pytest.mark.parametrize("forgery", ["other key", "other audience", "tampered", "no jti", "hmac"])
def test_tokens_not_made_by_this_server_for_this_server_are_refused(anonymous, app, registered, forgery):
    claims = _claims(app, registered[0])
    if forgery == "other key":
        token = jwt.encode(claims, ec.generate_private_key(ec.SECP256R1()), algorithm="ES256")
    elif forgery == "other audience":
        token = _server_signed(app, {**claims, "aud": "http://other-server/fhir"})
    elif forgery == "tampered":  # the payload of one token with the signature of another
        header, _, signature = _server_signed(app, claims).split(".")
        payload = _server_signed(app, {**claims, "unrestricted": True, "scope": "system/*.cruds"}).split(".")[1]
        token = f"{header}.{payload}.{signature}"
    elif forgery == "no jti":
        token = _server_signed(app, {k: v for k, v in claims.items() if k != "jti"})
    else:
        token = jwt.encode(claims, "a-guessed-secret", algorithm="HS256")
    response = anonymous.get("/fhir/Patient", headers=bearer(token))
    assert response.status_code == 401, response.text
    assert response.json()["issue"][0]["code"] == "login"


def test_the_jwks_endpoint_publishes_the_key_that_checks_tokens(anonymous, registered):
    token = get_token(anonymous, *registered)
    [key] = jwt.PyJWKSet.from_dict(anonymous.get("/auth/jwks").json()).keys
    claims = jwt.decode(token, key.key, algorithms=["ES256"], audience="http://testserver/fhir")
    assert claims["sub"] == registered[0]


def test_failed_authentications_leave_audit_events(anonymous, token_for, server):
    anonymous.get("/fhir/Patient", headers={"Authorization": "Bearer not-a-token"})
    anonymous.post("/auth/token", data={"grant_type": "client_credentials"}, auth=("nobody", "guess"))
    server.audit.flush()
    auditor = bearer(token_for("system/AuditEvent.rs"))
    events = [e["resource"] for e in anonymous.get("/fhir/AuditEvent?_count=100", headers=auditor).json()["entry"]]
    failed = {e["outcomeDesc"] for e in events if e["outcome"] == "4" and e["type"]["code"] == "110114"}
    assert failed >= {"The access token is not valid for this server", "/auth/token: Client authentication failed"}


def test_a_token_seen_before_is_checked_without_a_thread(anonymous, app, registered):
    """Checking a remembered token with fresh revocations needs no I/O, so the HTTP layer does it
    on the event loop; anything that may read the database or the network goes to a thread."""
    auth = app.state.authentication
    header = f"Bearer {get_token(anonymous, *registered)}"
    assert auth.needs_io(header)  # never verified: the signature is checked first
    assert anonymous.get("/fhir/Patient", headers={"Authorization": header}).status_code == 200
    assert not auth.needs_io(header)
    auth.tokens.revocations.changed()  # a revocation was written: reload before the next check
    assert auth.needs_io(header)
    assert auth.needs_io("Bearer someone-elses-token") and auth.needs_io(None)
