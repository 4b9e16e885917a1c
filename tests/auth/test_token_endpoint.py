"""POST /auth/token: client credentials with client_secret_basic, client_secret_post and
private_key_jwt (SMART Backend Services), and every way a request is refused."""

from __future__ import annotations

import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from fhir_server.auth.client_authentication import ASSERTION_TYPE
from tests.auth.conftest import bearer

TOKEN_URL = "http://testserver/auth/token"
HOSPITAL = "Organization/org-county-hospital"


@pytest.fixture
def secret_client(app):
    client, secret = app.state.authentication.clients.register(
        "township HIS", HOSPITAL, ["system/Observation.cruds", "system/Patient.rs"])
    return client.client_id, secret


@pytest.fixture
def key_client(app):
    """A client registered with a JWKS holding one RSA and one EC public key."""
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP384R1())
    jwks = {"keys": [
        {**RSAAlgorithm.to_jwk(rsa_key.public_key(), as_dict=True), "kid": "rsa-1"},
        {**ECAlgorithm.to_jwk(ec_key.public_key(), as_dict=True), "kid": "ec-1"},
    ]}
    client, secret = app.state.authentication.clients.register(
        "lab system", HOSPITAL, ["system/Observation.cu"], jwks=jwks)
    assert secret is None
    return client.client_id, {"rsa-1": (rsa_key, "RS384"), "ec-1": (ec_key, "ES384")}


def _assertion(client_id: str, keys: dict, kid: str = "rsa-1", **changes) -> str:
    key, alg = keys[kid]
    claims = {"iss": client_id, "sub": client_id, "aud": TOKEN_URL, "exp": int(time.time()) + 240,
              "jti": uuid.uuid4().hex, **changes}
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, key, algorithm=alg,
                      headers={"kid": kid})


def _assertion_form(assertion: str, scope: str = "system/Observation.c") -> dict:
    return {"grant_type": "client_credentials", "scope": scope,
            "client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion}


def test_client_secret_basic_gets_a_signed_token_with_the_granted_scopes(anonymous, app, settings, secret_client):
    client_id, secret = secret_client
    response = anonymous.post("/auth/token", auth=(client_id, secret), data={
        "grant_type": "client_credentials", "scope": "system/Observation.rs system/Patient.cruds openid"})
    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == settings.auth_token_lifetime_seconds == 3600
    assert body["scope"] == "system/Observation.rs system/Patient.rs"  # narrowed to the registration
    claims = jwt.decode(body["access_token"], app.state.authentication.tokens.key.public_key,
                        algorithms=["ES256"], audience="http://testserver/fhir")
    assert claims["iss"] == "http://testserver/auth"
    assert claims["sub"] == claims["client_id"] == client_id
    assert claims["organization"] == HOSPITAL
    assert claims["scope"] == body["scope"]
    assert claims["exp"] - claims["iat"] == 3600
    assert len(claims["jti"]) == 32
    assert "unrestricted" not in claims


def test_client_secret_post_works_and_no_scope_means_all_registered_scopes(anonymous, secret_client):
    client_id, secret = secret_client
    response = anonymous.post("/auth/token", data={
        "grant_type": "client_credentials", "client_id": client_id, "client_secret": secret})
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "system/Observation.cruds system/Patient.rs"


@pytest.mark.parametrize("kid", ["rsa-1", "ec-1"])
def test_private_key_jwt_gets_a_token_once_per_assertion(anonymous, key_client, kid):
    client_id, keys = key_client
    assertion = _assertion(client_id, keys, kid)
    first = anonymous.post("/auth/token", data=_assertion_form(assertion))
    assert first.status_code == 200, first.text
    assert first.json()["scope"] == "system/Observation.c"
    token = first.json()["access_token"]
    created = anonymous.post("/fhir/Observation", headers=bearer(token), json={
        "resourceType": "Observation", "status": "final", "code": {"text": "血糖"}})
    assert created.status_code != 401 and created.status_code != 403, created.text
    replay = anonymous.post("/auth/token", data=_assertion_form(assertion))
    assert replay.status_code == 401
    assert replay.json()["error"] == "invalid_client"


@pytest.mark.parametrize("changes", [
    {"aud": "http://elsewhere/auth/token"},           # another server's token endpoint
    {"sub": "someone-else"},                          # sub must equal iss
    {"exp": int(time.time()) - 120},                  # expired
    {"exp": int(time.time()) + 3600},                 # more than five minutes ahead
    {"jti": None},                                    # no jti: replay could not be detected
])
def test_a_bad_client_assertion_is_refused(anonymous, key_client, changes):
    client_id, keys = key_client
    response = anonymous.post("/auth/token", data=_assertion_form(_assertion(client_id, keys, **changes)))
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_client"


def test_an_assertion_signed_by_another_key_is_refused(anonymous, key_client):
    client_id, keys = key_client
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = _assertion(client_id, {"rsa-1": (stranger, "RS384")})
    assert anonymous.post("/auth/token", data=_assertion_form(forged)).status_code == 401


def test_a_secret_client_cannot_use_an_hmac_assertion_signed_with_its_secret(anonymous, secret_client):
    client_id, secret = secret_client
    forged = jwt.encode({"iss": client_id, "sub": client_id, "aud": TOKEN_URL, "jti": "x",
                         "exp": int(time.time()) + 60}, secret, algorithm="HS256")
    assert anonymous.post("/auth/token", data=_assertion_form(forged)).status_code == 401


@pytest.mark.parametrize("credentials", ["wrong secret", "unknown client"])
def test_bad_credentials_are_401_invalid_client_with_a_basic_challenge(anonymous, secret_client, credentials):
    client_id, secret = secret_client
    auth = (client_id, "not-the-secret") if credentials == "wrong secret" else ("nobody", secret)
    response = anonymous.post("/auth/token", auth=auth, data={"grant_type": "client_credentials"})
    assert response.status_code == 401
    assert response.json() == {"error": "invalid_client", "error_description": "Client authentication failed"}
    assert response.headers["WWW-Authenticate"].startswith("Basic")


def test_a_revoked_client_gets_no_token(anonymous, app, secret_client):
    client_id, secret = secret_client
    assert app.state.authentication.clients.revoke(client_id)
    response = anonymous.post("/auth/token", auth=(client_id, secret), data={"grant_type": "client_credentials"})
    assert response.status_code == 401


@pytest.mark.parametrize(("form", "content_type", "error"), [
    ({"grant_type": "authorization_code"}, None, "unsupported_grant_type"),
    ({"grant_type": "client_credentials", "scope": "system/Encounter.rs"}, None, "invalid_scope"),
    ({"grant_type": "client_credentials", "client_assertion_type": "other", "client_assertion": "x"},
     None, "invalid_request"),
    (b'{"grant_type": "client_credentials"}', "application/json", "invalid_request"),
])
def test_malformed_token_requests_are_oauth_errors(anonymous, secret_client, form, content_type, error):
    client_id, secret = secret_client
    if content_type:
        response = anonymous.post("/auth/token", auth=(client_id, secret), content=form,
                                  headers={"Content-Type": content_type})
    else:
        response = anonymous.post("/auth/token", auth=(client_id, secret), data=form)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == error


def test_no_client_authentication_is_401(anonymous):
    response = anonymous.post("/auth/token", data={"grant_type": "client_credentials"})
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_secrets_are_stored_hashed(app, secret_client, server):
    from sqlalchemy import select

    from fhir_server.auth.schema import auth_client

    client_id, secret = secret_client
    with server.db.read() as conn:
        stored = conn.execute(select(auth_client.c.secret_hash).where(auth_client.c.client_id == client_id)).scalar()
    assert secret not in stored
    assert stored.startswith("scrypt$")
